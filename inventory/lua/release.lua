-- held -> released: the buyer gives the hold back. ARGV: reservation id, user, now_ms.
-- Idempotent: a hold already released or expired is returned as it is.
local id, user, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local r, refusal = find_reservation(id, user)
if not r then
  return refusal
end
if r.state == 'released' or r.state == 'expired' then
  return cmsgpack.pack({'ok', r, stock_reply(now), 0})
end
if r.state ~= 'held' then
  return cmsgpack.pack({'hold_not_active', r, stock_reply(now), 0})
end
return_hold(r, 'released', now)
return cmsgpack.pack({'ok', r, stock_reply(now), 1})
