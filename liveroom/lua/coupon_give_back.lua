-- Give a coupon back to its owner's wallet: only if the order named has it (liveroom/coupons.py).
-- KEYS[1] = used (seq -> order). ARGV[1] = seq, ARGV[2] = order id.
-- Reply: 1 if it was given back now, 0 if that order did not have it (already given back).
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
