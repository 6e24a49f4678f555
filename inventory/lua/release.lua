-- held -> released: the buyer gives the hold back. ARGV: reservation id, user, now_ms.
-- Idempotent: a hold already released or expired is returned as it is.
local id, user, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local raw = redis.call('HGET', K.res, id)
if not raw then
  return cmsgpack.pack({'unknown_reservation'})
end
local r = cmsgpack.unpack(raw)
if r.user ~= user then
  return cmsgpack.pack({'not_holder', r})
end
if r.state == 'released' or r.state == 'expired' then
  return cmsgpack.pack({'ok', r, stock_reply(now), 0})
end
if r.state ~= 'held' then
  return cmsgpack.pack({'hold_not_active', r, stock_reply(now), 0})
end
return_hold(r, 'released', now)
return cmsgpack.pack({'ok', r, stock_reply(now), 1})
