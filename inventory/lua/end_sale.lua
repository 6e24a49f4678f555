-- End a sale now. ARGV: now_ms, reason. Idempotent: a sale already ended keeps its first reason.
local now = tonumber(ARGV[1])
local ends_at = redis.call('HGET', K.meta, 'ends_at')
if not ends_at then
  return cmsgpack.pack({'unknown_sale'})
end
if now >= tonumber(ends_at) then
  return cmsgpack.pack({'ok', 0, stock_reply(now)})
end
redis.call('HSET', K.meta, 'ends_at', now, 'ended_reason', ARGV[2])
return cmsgpack.pack({'ok', 1, stock_reply(now)})
