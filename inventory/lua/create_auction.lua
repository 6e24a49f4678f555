-- Create an auction and its one-unit sale. ARGV[1] = msgpack map of the sale's :meta fields,
-- ARGV[2] = msgpack map of the auction's fields. The sale is over for buying from the start
-- (ends_at = created_at): its unit is only ever held by the auction's close.
local sale = cmsgpack.unpack(ARGV[1])
local auction = cmsgpack.unpack(ARGV[2])
if redis.call('EXISTS', A.auction) == 1 then
  -- The same call sent again after a lost connection finds its own auction: success.
  if redis.call('HGET', A.auction, 'created_at') == tostring(auction.created_at)
      and redis.call('HGET', A.auction, 'room') == auction.room then
    return cmsgpack.pack({'ok'})
  end
  return cmsgpack.pack({'exists'})
end
if redis.call('EXISTS', K.meta) == 1 then
  return cmsgpack.pack({'exists'})
end
local function flat(map)
  local out = {}
  for k, v in pairs(map) do
    out[#out + 1] = k
    out[#out + 1] = v
  end
  return out
end
redis.call('HSET', K.meta, unpack(flat(sale)))
redis.call('HSET', A.auction, unpack(flat(auction)))
local made = redis.pcall('XGROUP', 'CREATE', K.stream, HANDOFF_GROUP, '0', 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
  return redis.error_reply(made.err)
end
return cmsgpack.pack({'ok'})
