-- Mark a coupon used by an order, atomically (orders' checkout through liveroom/coupons.py).
-- KEYS[1] = the drop's meta hash, KEYS[2] = owners (seq -> user), KEYS[3] = used (seq -> order).
-- ARGV[1] = seq, ARGV[2] = user id, ARGV[3] = order id, ARGV[4] = now ms.
-- Reply: 'ok' (used by this order now, or already), 'used' (by another order: {'used', order}),
-- 'not_yours', 'expired' or 'unknown'.
local expires_at = redis.call('HGET', KEYS[1], 'expires_at')
local owner = redis.call('HGET', KEYS[2], ARGV[1])
if not expires_at or not owner then
  return {'unknown', ''}
end
if owner ~= ARGV[2] then
  return {'not_yours', ''}
end
local by = redis.call('HGET', KEYS[3], ARGV[1])
if by then
  if by == ARGV[3] then
    return {'ok', by}
  end
  return {'used', by}
end
if tonumber(ARGV[4]) >= tonumber(expires_at) then
  return {'expired', expires_at}
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return {'ok', ARGV[3]}
