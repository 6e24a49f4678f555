-- Close a lucky bag's entries once its draw time has come (liveroom/lucky.py).
-- KEYS[1] = the bag's meta hash. ARGV[1] = now ms.
-- Reply: 'closed' to the one caller that closed it (of every process), else the status it has
-- ('drawing', 'drawn'), 'not_due' before its time, or 'unknown'.
local m = redis.call('HMGET', KEYS[1], 'status', 'draw_at')
if not m[1] then
  return 'unknown'
end
if m[1] ~= 'open' then
  return m[1]
end
if tonumber(ARGV[1]) < tonumber(m[2]) then
  return 'not_due'
end
redis.call('HSET', KEYS[1], 'status', 'drawing', 'closed_at', ARGV[1])
return 'closed'
