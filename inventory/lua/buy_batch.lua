-- Decide a whole batch of buys for one sale in one step.
-- ARGV[1] = now_ms, ARGV[2] = msgpack array of {user, qty, request_id}.
-- Reply: msgpack {'ok', results, stock} with one result {status, reservation, qty, price_cents,
-- expires_at, replayed} per request, in order; or {'unknown_sale'}.
-- All decisions are made first against local copies of the counters; all writes come last.
local now = tonumber(ARGV[1])
local requests = cmsgpack.unpack(ARGV[2])
local m = redis.call('HMGET', K.meta, 'id', 'room', 'product', 'anchor', 'title', 'category',
  'brand', 'price_cents', 'per_user_limit', 'starts_at', 'ends_at', 'hold_ms', 'remaining', 'held',
  'sold', 'seq')
if not m[1] then
  return cmsgpack.pack({'unknown_sale'})
end
local sale_id = m[1]
local price = tonumber(m[8])
local limit = tonumber(m[9])
local starts_at = tonumber(m[10])
local ends_at = tonumber(m[11])
local hold_ms = tonumber(m[12])
local remaining = tonumber(m[13])
local held = tonumber(m[14])
local sold = tonumber(m[15])
local seq = tonumber(m[16])

local window = 'open'
if now >= ends_at then
  window = 'ended'
elseif now < starts_at then
  window = 'not_started'
end

local units = {}        -- user -> units held or sold, read once per user per batch
local banned = {}       -- user -> whether a moderator's ban holds now, read once per batch
local changed_users = {}
local limited = {}       -- users refused for the limit with no units: listed in K.users at 0
local answers = {}      -- request field -> answer decided earlier in this batch
local to_remember = {}  -- {field, answer} pairs for the :req hash
local new_holds = {}
local results = {}

for i, request in ipairs(requests) do
  local user, qty, request_id = request[1], request[2], request[3]
  local field = user .. ':' .. request_id
  local answer = answers[field]
  local replayed = 1
  if answer == nil then
    local stored = redis.call('HGET', K.req, field)
    if stored then
      answer = cmsgpack.unpack(stored)
    end
  end
  if answer == nil then
    replayed = 0
    local is_banned = banned[user]
    if is_banned == nil then
      local until_ms = tonumber(redis.call('HGET', K.bans, user) or '-1')
      is_banned = until_ms == 0 or until_ms > now
      banned[user] = is_banned
    end
    if is_banned then
      answer = {'banned', '', 0, 0, 0}
    elseif window ~= 'open' then
      answer = {window, '', 0, 0, 0}
    else
      local have = units[user]
      if have == nil then
        have = tonumber(redis.call('HGET', K.users, user) or '0')
        units[user] = have
      end
      if have + qty > limit then
        answer = {'limit_reached', '', 0, 0, 0}
        if have == 0 then
          limited[#limited + 1] = user
        end
      elseif qty > remaining then
        answer = {'sold_out', '', 0, 0, 0}
      else
        seq = seq + 1
        local id = sale_id .. '.' .. string.format('%d', seq)
        local expires_at = now + hold_ms
        remaining = remaining - qty
        held = held + qty
        units[user] = have + qty
        changed_users[user] = true
        new_holds[#new_holds + 1] = {
          reservation = id, sale = sale_id, room = m[2], product = m[3], anchor = m[4],
          user = user, qty = qty, price_cents = price, title = m[5], category = m[6],
          brand = m[7], expires_at = expires_at, ts = now, state = 'held',
        }
        answer = {'reserved', id, qty, price, expires_at}
      end
    end
    answers[field] = answer
    -- A countdown or ban answer took nothing and decided nothing, so a retry may still succeed
    -- later (the sale opens, the ban is lifted).
    if answer[1] ~= 'not_started' and answer[1] ~= 'banned' then
      to_remember[#to_remember + 1] = {field, answer}
    end
  end
  results[i] = {answer[1], answer[2], answer[3], answer[4], answer[5], replayed}
end

-- Writes last.
if #new_holds > 0 then
  redis.call('HSET', K.meta, 'remaining', remaining, 'held', held, 'seq', seq)
  for user in pairs(changed_users) do
    redis.call('HSET', K.users, user, units[user])
  end
  for _, r in ipairs(new_holds) do
    redis.call('ZADD', K.holds, r.expires_at, r.reservation)
    redis.call('HSET', K.res, r.reservation, cmsgpack.pack(r))
    handoff(HANDOFF.reserved, r, now)
  end
end
-- A user listed in K.users has an answer other than sold_out to replay, so a process that
-- knows the sale sold out still sends their buys here (inventory/_soldout.py).
for _, user in ipairs(limited) do
  redis.call('HSETNX', K.users, user, 0)
end
for _, pair in ipairs(to_remember) do
  redis.call('HSET', K.req, pair[1], cmsgpack.pack(pair[2]))
end
return cmsgpack.pack({'ok', results,
  {sale_id, m[2], remaining, held, sold, sale_status(now, starts_at, ends_at, remaining)}})
