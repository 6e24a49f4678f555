-- Enter a lucky bag, once, while its entries are open (liveroom/lucky.py).
-- KEYS[1] = the bag's meta hash, KEYS[2] = its entries hash (user id -> display name).
-- ARGV[1] = now ms, ARGV[2] = user id, ARGV[3] = display name.
-- Reply: {outcome, entries}; outcome is 'entered', 'already_entered', 'closed' or 'unknown'.
-- The window check and the entry are one step: an entry after the close can never be counted.
local m = redis.call('HMGET', KEYS[1], 'status', 'draw_at')
if not m[1] then
  return {'unknown', 0}
end
if m[1] ~= 'open' or tonumber(ARGV[1]) >= tonumber(m[2]) then
  return {'closed', redis.call('HLEN', KEYS[2])}
end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then
  return {'already_entered', redis.call('HLEN', KEYS[2])}
end
return {'entered', redis.call('HLEN', KEYS[2])}
