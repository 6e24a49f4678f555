-- One message against a rate budget kept as its theoretical arrival time (GCRA): a burst of
-- ARGV[3] messages, then one per ARGV[2] ms, with no window edges to cross twice.
-- KEYS[1]: the budget. ARGV: now_ms, interval_ms, burst. Reply: 0 when taken (and counted),
-- else the ms to wait (and nothing counted).
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local next_tat = tat + interval
local wait = next_tat - now - interval * burst
if wait > 0 then
  return wait
end
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now)
return 0
