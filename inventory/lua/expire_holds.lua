-- Return holds whose time is up (expires_at <= now) to stock, at most `limit` per call.
-- ARGV: now_ms, limit, retention_ms. Safe to run from many processes at once: each hold changes
-- state only here, under its state check, atomically.
-- Reply: {'ok', expired, stock, done, more} or {'unknown_sale'}. done = ended with no hold left
-- (the keys then get their retention TTL); more = the limit was hit, call again.
local now, limit, retention_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ends_at = redis.call('HGET', K.meta, 'ends_at')
if not ends_at then
  return cmsgpack.pack({'unknown_sale'})
end
local due = redis.call('ZRANGEBYSCORE', K.holds, '-inf', now, 'LIMIT', 0, limit)
local expiring = {}
local stale = {}
for _, id in ipairs(due) do
  local raw = redis.call('HGET', K.res, id)
  local r = raw and cmsgpack.unpack(raw)
  if r and r.state == 'held' then
    expiring[#expiring + 1] = r
  else
    stale[#stale + 1] = id
  end
end
-- Writes last.
for _, r in ipairs(expiring) do
  return_hold(r, 'expired', now)
end
for _, id in ipairs(stale) do
  redis.call('ZREM', K.holds, id)
end
local done = 0
if now >= tonumber(ends_at) and redis.call('ZCARD', K.holds) == 0 then
  done = 1
  for _, key in ipairs(KEYS) do
    redis.call('PEXPIRE', key, retention_ms)
  end
end
local more = 0
if #due >= limit then
  more = 1
end
return cmsgpack.pack({'ok', #expiring, stock_reply(now), done, more})
