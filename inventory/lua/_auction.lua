-- Prepended to every auction script, after _prelude.lua: the auction's keys and helpers, no side
-- effects of its own. An auction "a_X" sells the one unit of its sale "s_X"; KEYS[1..7] are the
-- sale's (K), KEYS[8..10] the auction's (A), all in the tag {sale:s_X}.
local A = {auction = KEYS[8], bidders = KEYS[9], req = KEYS[10]}

-- The bid increment at a price: {below this price (cents), the increment (cents)}, then the
-- increment above the last band. inventory/_auctions.py (INCREMENT_BANDS) mirrors this table
-- for reads; docs/inventory.md documents it.
local BANDS = {
  {100, 5}, {500, 25}, {2500, 50}, {10000, 100}, {25000, 250}, {50000, 500}, {100000, 1000},
  {250000, 2500}, {500000, 5000},
}
local TOP_INCREMENT = 10000

local function increment(price)
  for _, band in ipairs(BANDS) do
    if price < band[1] then
      return band[2]
    end
  end
  return TOP_INCREMENT
end

local AUCTION_FIELDS = {
  'id', 'room', 'status', 'starts_at', 'ends_at', 'extend_ms', 'sudden', 'start_cents', 'price', 'leader',
  'leader_name', 'bids', 'runner', 'runner_bid', 'winner_res', 'second_res', 'second_state',
}
local NUMERIC = {'starts_at', 'ends_at', 'extend_ms', 'sudden', 'start_cents', 'price', 'bids',
  'runner_bid'}

local function read_auction()
  local v = redis.call('HMGET', A.auction, unpack(AUCTION_FIELDS))
  if not v[1] then
    return nil
  end
  local a = {}
  for i, f in ipairs(AUCTION_FIELDS) do
    a[f] = v[i] or ''
  end
  for _, f in ipairs(NUMERIC) do
    a[f] = tonumber(a[f]) or 0
  end
  return a
end

-- The lowest bid that can lead now: the start price, then the price plus its band's increment.
local function min_next(a)
  if a.bids == 0 then
    return a.start_cents
  end
  return a.price + increment(a.price)
end

-- The one definition of an auction's status; inventory/_auctions.py mirrors it for reads.
local function auction_status(a, now)
  if a.status == 'closed' or now >= a.ends_at then
    return 'ended'
  end
  if now < a.starts_at then
    return 'scheduled'
  end
  return 'live'
end

-- What every reply carries, so the edge answers and pushes without a second read.
local function snapshot(a, now)
  return {
    id = a.id, room = a.room, status = auction_status(a, now), closed = a.status == 'closed',
    price = a.price, min_next = min_next(a), ends_at = a.ends_at, leader = a.leader,
    leader_name = a.leader_name, bids = a.bids, winner_res = a.winner_res,
    second_res = a.second_res, second_state = a.second_state,
  }
end

local function is_banned(user, now)
  local until_ms = tonumber(redis.call('HGET', K.bans, user) or '-1')
  return until_ms == 0 or until_ms > now
end

-- The sale's one unit, held for `user` at `price` for the sale's hold_ms: a reservation like a
-- flash sale's buy makes, handed to orders on the sale's stream in the same step.
local function new_hold(user, price, now)
  local m = redis.call('HMGET', K.meta, 'id', 'room', 'product', 'anchor', 'title', 'category',
    'brand', 'hold_ms', 'seq')
  local seq = tonumber(m[9]) + 1
  local id = m[1] .. '.' .. string.format('%d', seq)
  local r = {
    reservation = id, sale = m[1], room = m[2], product = m[3], anchor = m[4], user = user,
    qty = 1, price_cents = price, title = m[5], category = m[6], brand = m[7],
    expires_at = now + tonumber(m[8]), ts = now, state = 'held',
  }
  redis.call('HSET', K.meta, 'seq', seq, 'price_cents', price)
  redis.call('HINCRBY', K.meta, 'remaining', -1)
  redis.call('HINCRBY', K.meta, 'held', 1)
  redis.call('HINCRBY', K.users, user, 1)
  redis.call('ZADD', K.holds, r.expires_at, id)
  redis.call('HSET', K.res, id, cmsgpack.pack(r))
  handoff(HANDOFF.reserved, r, now)
  return r
end
