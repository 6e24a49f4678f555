-- Grab coupons of one drop, a batch at a time, in arrival order (liveroom/coupons.py).
-- KEYS[1] = the drop's meta hash, KEYS[2] = grabbed (user -> seq), KEYS[3] = requests
-- (user:request_id -> seq), KEYS[4] = owners (seq -> user).
-- ARGV[1] = now ms, then (user id, request id) per grab.
-- Reply: {left, {status, seq, ...}} with per grab a status 'granted', 'replayed' (this request
-- was granted before: the same coupon), 'already_grabbed' (another request of this account
-- was: its coupon), 'gone', 'expired' or 'unknown', and the coupon's seq ('' for none).
-- One account, one coupon: the check and the grant are one step, so no burst can hand out
-- more than the drop's count or two to one account.
local m = redis.call('HMGET', KEYS[1], 'left', 'expires_at', 'count')
local out = {}
if not m[1] then
  for _ = 2, #ARGV, 2 do
    out[#out + 1] = 'unknown'
    out[#out + 1] = ''
  end
  return {0, out}
end
local now = tonumber(ARGV[1])
local left = tonumber(m[1])
local expires_at = tonumber(m[2])
local count = tonumber(m[3])
local start_left = left
for i = 2, #ARGV, 2 do
  local user = ARGV[i]
  local seen = redis.call('HGET', KEYS[3], user .. ':' .. ARGV[i + 1])
  if seen then
    out[#out + 1] = 'replayed'
    out[#out + 1] = seen
  else
    local mine = redis.call('HGET', KEYS[2], user)
    if mine then
      out[#out + 1] = 'already_grabbed'
      out[#out + 1] = mine
    elseif now >= expires_at then
      out[#out + 1] = 'expired'
      out[#out + 1] = ''
    elseif left <= 0 then
      out[#out + 1] = 'gone'
      out[#out + 1] = ''
    else
      local seq = tostring(count - left + 1)
      left = left - 1
      redis.call('HSET', KEYS[2], user, seq)
      redis.call('HSET', KEYS[3], user .. ':' .. ARGV[i + 1], seq)
      redis.call('HSET', KEYS[4], seq, user)
      out[#out + 1] = 'granted'
      out[#out + 1] = seq
    end
  end
end
if left ~= start_left then
  redis.call('HSET', KEYS[1], 'left', left)
end
return {left, out}
