-- enqueue: store jobs unless their id exists; wake idle supervisors.
-- KEYS[1] ready set (for the hash slot). ARGV: prefix, now_ms, then groups of
-- 5: id, plugin, data_json, options_json, run_at_ms ('' = now).
-- Returns one state per job: 'new:queued', 'new:scheduled' or the existing state.
local prefix, now = ARGV[1], tonumber(ARGV[2])
local out, woke, created = {}, false, 0
for i = 3, #ARGV, 5 do
  local state = store_job(prefix, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], now)
  if state == 'new:queued' then woke = true end
  if string.sub(state, 1, 4) == 'new:' then created = created + 1 end
  out[#out + 1] = state
end
if created > 0 then redis.call('HINCRBY', prefix .. 'stats', 'enqueued', created) end
if woke then redis.call('PUBLISH', prefix .. 'wake', '1') end
return out
