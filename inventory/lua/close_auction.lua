-- Close an auction, once: its leader (if any) gets the sale's unit held at the winning price.
-- ARGV: now_ms, reason, force ('1': close now even before the end, e.g. the room ended),
-- retention_ms. Reply: {'closed', closed_now (0|1), snapshot}, {'not_due', 0, snapshot} (the
-- end is later: bids extended it) or {'unknown_auction'}. Whoever runs it first closes it;
-- every later call answers closed_now = 0.
local now, reason, force = tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1'
local retention_ms = tonumber(ARGV[4])
local a = read_auction()
if not a then
  return cmsgpack.pack({'unknown_auction'})
end
if a.status == 'closed' then
  return cmsgpack.pack({'closed', 0, snapshot(a, now)})
end
if not force and now < a.ends_at then
  return cmsgpack.pack({'not_due', 0, snapshot(a, now)})
end
a.status = 'closed'
if now < a.ends_at then
  a.ends_at = now
end
local fields = {'status', 'closed', 'ends_at', a.ends_at, 'closed_at', now, 'ended_reason', reason}
if a.leader ~= '' then
  local r = new_hold(a.leader, a.price, now)
  a.winner_res = r.reservation
  fields[#fields + 1] = 'winner_res'
  fields[#fields + 1] = r.reservation
else
  a.second_state = 'none'
  fields[#fields + 1] = 'second_state'
  fields[#fields + 1] = 'none'
end
redis.call('HSET', A.auction, unpack(fields))
-- The auction's own keys outlive its holds (at most a day) by far; the sale's keys get the same
-- retention from the sweeper once its holds are settled.
redis.call('PEXPIRE', A.auction, retention_ms)
redis.call('PEXPIRE', A.bidders, retention_ms)
redis.call('PEXPIRE', A.req, retention_ms)
return cmsgpack.pack({'closed', 1, snapshot(a, now)})
