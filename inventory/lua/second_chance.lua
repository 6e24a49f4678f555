-- After the close: if the winner let their hold lapse (expired, or released), hold the unit for
-- the runner-up at their last bid, once. ARGV: now_ms.
-- Reply: {outcome, snapshot, expires_at} with outcome
--   'wait'    the winner's hold still runs until expires_at: ask again then;
--   'offered' the runner-up's hold was made now (snapshot.second_res), until expires_at;
--   'settled' nothing (more) to do: sold to the winner, no runner-up, or already decided;
-- or {'unknown_auction'} / {'not_closed'}.
local now = tonumber(ARGV[1])
local a = read_auction()
if not a then
  return cmsgpack.pack({'unknown_auction'})
end
if a.status ~= 'closed' then
  return cmsgpack.pack({'not_closed', snapshot(a, now), 0})
end
if a.second_state ~= '' or a.winner_res == '' then
  return cmsgpack.pack({'settled', snapshot(a, now), 0})
end
local raw = redis.call('HGET', K.res, a.winner_res)
if not raw then
  return cmsgpack.pack({'settled', snapshot(a, now), 0})
end
local r = cmsgpack.unpack(raw)
if r.state == 'held' then
  if now < r.expires_at then
    return cmsgpack.pack({'wait', snapshot(a, now), r.expires_at})
  end
  -- Due and not yet swept: expire it here, as a late commit would.
  return_hold(r, 'expired', now)
end
if r.state == 'committed' or r.state == 'restocked' then
  a.second_state = 'sold'
elseif a.runner == '' or is_banned(a.runner, now) then
  a.second_state = 'none'
else
  local h = new_hold(a.runner, a.runner_bid, now)
  a.second_state, a.second_res = 'offered', h.reservation
  redis.call('HSET', A.auction, 'second_state', a.second_state, 'second_res', a.second_res)
  return cmsgpack.pack({'offered', snapshot(a, now), h.expires_at})
end
redis.call('HSET', A.auction, 'second_state', a.second_state)
return cmsgpack.pack({'settled', snapshot(a, now), 0})
