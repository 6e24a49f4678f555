-- Credit watch time in one room (liveroom/watch.py): each user seen now gets the time since they
-- were last seen, when that gap is short enough to mean they watched all along.
-- KEYS[1] = hash user -> last seen ms, KEYS[2] = hash user -> watched ms.
-- ARGV[1] = now ms, ARGV[2] = the longest gap credited (ms), ARGV[3] = retention (ms),
-- ARGV[4..] = the user ids seen now.
-- Several processes (or sockets) seeing one user at about the same time credit the time once:
-- the later one finds a gap of about nothing.
local now = tonumber(ARGV[1])
local max_gap = tonumber(ARGV[2])
for i = 4, #ARGV do
  local user = ARGV[i]
  local last = tonumber(redis.call('HGET', KEYS[1], user) or '-1')
  if now > last then
    if last >= 0 and now - last <= max_gap then
      redis.call('HINCRBY', KEYS[2], user, now - last)
    end
    redis.call('HSET', KEYS[1], user, now)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return #ARGV - 3
