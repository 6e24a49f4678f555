-- Prepended to every inventory script by _scripts.py: shared helpers, no side effects of its own.
-- Every script gets the same seven keys, all under one hash tag {sale:ID}, so each script
-- touches a single cluster slot.
local K = {
  meta = KEYS[1], users = KEYS[2], req = KEYS[3], holds = KEYS[4], res = KEYS[5], stream = KEYS[6],
  bans = KEYS[7],
}

-- The one definition of a sale's status; inventory/_models.py mirrors it for reads.
local function sale_status(now, starts_at, ends_at, remaining)
  if now >= ends_at then return 'ended' end
  if now < starts_at then return 'scheduled' end
  if remaining <= 0 then return 'sold_out' end
  return 'live'
end

-- Counters after a step, so every mutating reply lets the edge push stock without a second read.
local function stock_reply(now)
  local m = redis.call('HMGET', K.meta, 'id', 'room', 'remaining', 'held', 'sold', 'starts_at',
    'ends_at')
  local remaining = tonumber(m[3])
  return {m[1], m[2], remaining, tonumber(m[4]), tonumber(m[5]),
    sale_status(now, tonumber(m[6]), tonumber(m[7]), remaining)}
end

-- The reservation `id`, held by `user` when one is given; else nil and the refusal to return.
local function find_reservation(id, user)
  local raw = redis.call('HGET', K.res, id)
  if not raw then
    return nil, cmsgpack.pack({'unknown_reservation'})
  end
  local r = cmsgpack.unpack(raw)
  if user and r.user ~= user then
    return nil, cmsgpack.pack({'not_holder', r})
  end
  return r
end

-- The hand-off to orders/. When a script is loaded, inventory/_scripts.py replaces the marker
-- line below with Lua generated from handoff/schema.py: HANDOFF (entry type -> its name on the
-- stream), HANDOFF_GROUP (the consumer group) and handoff(entry_type, r, now), which adds the
-- entry for reservation r to the sale's stream: the schema's fields copied from r, and the
-- time of the change.
--@handoff

-- held -> released | expired. The only step that gives held units back; callers have checked
-- that r.state == 'held', and every write below is to keys known to exist.
local function return_hold(r, new_state, now)
  r.state = new_state
  redis.call('HINCRBY', K.meta, 'held', -r.qty)
  redis.call('HINCRBY', K.meta, 'remaining', r.qty)
  redis.call('HINCRBY', K.users, r.user, -r.qty)
  redis.call('ZREM', K.holds, r.reservation)
  redis.call('HSET', K.res, r.reservation, cmsgpack.pack(r))
  handoff(HANDOFF[new_state], r, now)
end
