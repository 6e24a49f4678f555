-- Create a sale. ARGV: field, value, ... for the :meta hash.
if redis.call('EXISTS', K.meta) == 1 then
  return cmsgpack.pack({'exists'})
end
redis.call('HSET', K.meta, unpack(ARGV))
-- The group starts at 0 so orders/ sees every entry, whenever its consumer first attaches.
local made = redis.pcall('XGROUP', 'CREATE', K.stream, 'orders', '0', 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
  return redis.error_reply(made.err)
end
return cmsgpack.pack({'ok'})
