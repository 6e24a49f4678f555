-- Decide a whole batch of bids on one auction in one step, in arrival order.
-- ARGV[1] = now_ms, ARGV[2] = msgpack array of {user, amount_cents, request_id, display_name,
-- rooms}, rooms being the rooms the bidder's connection has joined (they bid in the auction's).
-- Reply: msgpack {'ok', results, snapshot, extended} with one result {status, replayed} per
-- request, in order; or {'unknown_auction'}. A bid that led when it was decided but was
-- overtaken later in the same batch is answered 'outbid'.
local now = tonumber(ARGV[1])
local requests = cmsgpack.unpack(ARGV[2])
local a = read_auction()
if not a then
  return cmsgpack.pack({'unknown_auction'})
end
local window = 'open'
if a.status == 'closed' or now >= a.ends_at then
  window = 'ended'
elseif now < a.starts_at then
  window = 'not_started'
end

local banned = {}       -- user -> whether a moderator's ban holds now, read once per batch
local answers = {}      -- request field -> answer decided earlier in this batch
local to_remember = {}  -- {field, answer} pairs for the :bid:req hash
local accepted = {}     -- {user, answer} of the bids that took the lead in this batch
local best = {}         -- user -> their highest accepted bid in this batch
local decided = {}
local replayed = {}
local extended = false

for i, request in ipairs(requests) do
  local user, amount, request_id, name = request[1], request[2], request[3], request[4]
  local in_room = false
  for _, room in ipairs(request[5]) do
    in_room = in_room or room == a.room
  end
  local field = user .. ':' .. request_id
  local answer = answers[field]
  replayed[i] = 1
  if answer == nil then
    local stored = redis.call('HGET', A.req, field)
    if stored then
      answer = cmsgpack.unpack(stored)
    end
  end
  if answer == nil then
    replayed[i] = 0
    local is_banned_now = banned[user]
    if is_banned_now == nil then
      is_banned_now = is_banned(user, now)
      banned[user] = is_banned_now
    end
    if is_banned_now then
      answer = {'banned', amount}
    elseif not in_room then
      answer = {'not_in_room', amount}
    elseif window ~= 'open' then
      answer = {window, amount}
    elseif user == a.leader then
      answer = {'already_leading', amount}
    elseif amount < min_next(a) then
      answer = {'too_low', amount}
    else
      if a.leader ~= '' then
        a.runner, a.runner_bid = a.leader, a.price
      end
      a.leader, a.leader_name, a.price, a.bids = user, name, amount, a.bids + 1
      best[user] = amount
      -- Anti-sniping: a bid in the last extend_ms moves the end to extend_ms after it.
      if a.sudden == 0 and a.ends_at - now < a.extend_ms then
        a.ends_at = now + a.extend_ms
        extended = true
      end
      answer = {'leading', amount}
      accepted[#accepted + 1] = {user, answer}
    end
    answers[field] = answer
    -- A countdown, ban or room answer decided nothing, so a retry may still lead later.
    if answer[1] ~= 'not_started' and answer[1] ~= 'banned' and answer[1] ~= 'not_in_room' then
      to_remember[#to_remember + 1] = {field, answer}
    end
  end
  decided[i] = answer
end

for _, pair in ipairs(accepted) do
  if pair[1] ~= a.leader or pair[2][2] ~= a.price then
    pair[2][1] = 'outbid'
  end
end

-- Writes last.
if #accepted > 0 then
  redis.call('HSET', A.auction, 'leader', a.leader, 'leader_name', a.leader_name, 'price',
    a.price, 'bids', a.bids, 'runner', a.runner, 'runner_bid', a.runner_bid, 'ends_at', a.ends_at)
  for user, amount in pairs(best) do
    redis.call('HSET', A.bidders, user, amount)
  end
end
for _, pair in ipairs(to_remember) do
  redis.call('HSET', A.req, pair[1], cmsgpack.pack(pair[2]))
end
local results = {}
for i, answer in ipairs(decided) do
  results[i] = {answer[1], replayed[i]}
end
return cmsgpack.pack({'ok', results, snapshot(a, now), extended})
