-- Create a sale. ARGV: field, value, ... for the :meta hash.
if redis.call('EXISTS', K.meta) == 1 then
  -- The same call sent again after a lost connection (the first copy did run) finds its own
  -- sale: that is success, not a collision. Room, product and creation time never change.
  for i = 1, #ARGV, 2 do
    local field = ARGV[i]
    if (field == 'room' or field == 'product' or field == 'created_at')
        and redis.call('HGET', K.meta, field) ~= ARGV[i + 1] then
      return cmsgpack.pack({'exists'})
    end
  end
  return cmsgpack.pack({'ok'})
end
redis.call('HSET', K.meta, unpack(ARGV))
-- The group starts at 0 so orders/ sees every entry, whenever its consumer first attaches.
local made = redis.pcall('XGROUP', 'CREATE', K.stream, HANDOFF_GROUP, '0', 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
  return redis.error_reply(made.err)
end
return cmsgpack.pack({'ok'})
