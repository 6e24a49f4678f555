-- hold -> committed (sold). ARGV: reservation id, user, now_ms.
-- A hold is committable while now < expires_at; from expires_at on it belongs to the sweeper, and
-- a late commit performs the expiry itself so the caller's answer and the stock agree.
local id, user, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local r, refusal = find_reservation(id, user)
if not r then
  return refusal
end
if r.state == 'committed' then
  return cmsgpack.pack({'ok', r, stock_reply(now), 0})
end
if r.state == 'expired' then
  return cmsgpack.pack({'hold_expired', r, stock_reply(now), 0})
end
if r.state ~= 'held' then
  return cmsgpack.pack({'hold_not_active', r, stock_reply(now), 0})
end
if now >= r.expires_at then
  return_hold(r, 'expired', now)
  return cmsgpack.pack({'hold_expired', r, stock_reply(now), 1})
end
r.state = 'committed'
redis.call('HINCRBY', K.meta, 'held', -r.qty)
redis.call('HINCRBY', K.meta, 'sold', r.qty)
redis.call('ZREM', K.holds, id)
redis.call('HSET', K.res, id, cmsgpack.pack(r))
handoff(HANDOFF.committed, r, now)
return cmsgpack.pack({'ok', r, stock_reply(now), 1})
