-- committed -> restocked: a sold unit comes back (order cancelled) while the sale is still open.
-- ARGV: reservation id, now_ms. Idempotent; once the sale has ended nothing changes.
local id, now = ARGV[1], tonumber(ARGV[2])
local r, refusal = find_reservation(id, nil)
if not r then
  return refusal
end
if r.state == 'restocked' then
  return cmsgpack.pack({'ok', r, stock_reply(now), 0})
end
if r.state ~= 'committed' then
  return cmsgpack.pack({'not_committed', r, stock_reply(now), 0})
end
if now >= tonumber(redis.call('HGET', K.meta, 'ends_at')) then
  return cmsgpack.pack({'sale_ended', r, stock_reply(now), 0})
end
r.state = 'restocked'
redis.call('HINCRBY', K.meta, 'sold', -r.qty)
redis.call('HINCRBY', K.meta, 'remaining', r.qty)
redis.call('HINCRBY', K.users, r.user, -r.qty)
redis.call('HSET', K.res, id, cmsgpack.pack(r))
handoff(HANDOFF.restocked, r, now)
return cmsgpack.pack({'ok', r, stock_reply(now), 1})
