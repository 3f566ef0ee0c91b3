-- enqueue: store jobs unless their id exists; wake idle supervisors.
-- KEYS[1] ready set (for the hash slot). ARGV: prefix, now_ms, queue, then groups
-- of 5: id, plugin, data_json, options_json ('' = defaults), run_at_ms ('' = now).
-- Jobs ready now go first to supervisors on standby (lib.lua push_to_standby).
-- Returns one state per job: 'new:queued', 'new:scheduled' or the existing state.
-- The bulk path: one HGET and one HSET per job; sequence numbers and set
-- insertions are done once per call.
local prefix, now = ARGV[1], tonumber(ARGV[2])
local queue = ARGV[3]
local n = (#ARGV - 3) / 5
local seq = redis.call('INCRBY', prefix .. 'seq', n) - n
local out, ready, delayed, created = {}, {}, {}, 0
for j = 0, n - 1 do
  local i = 4 + j * 5
  local id = ARGV[i]
  local jkey = prefix .. 'job:' .. id
  local existing = redis.call('HGET', jkey, 'state')
  if existing then
    out[#out + 1] = existing
  else
    local opts = ARGV[i + 3] == '' and {} or cjson.decode(ARGV[i + 3])
    local run_at = tonumber(ARGV[i + 4])
    local state
    if run_at and run_at > now then
      delayed[#delayed + 1] = run_at
      delayed[#delayed + 1] = id
      state = 'scheduled'
    else
      ready[#ready + 1] = -tonumber(opts.priority or 0) * PRIORITY_SHIFT + seq + j + 1
      ready[#ready + 1] = id
      state = 'queued'
    end
    write_job(jkey, id, ARGV[i + 1], ARGV[i + 2], opts, state, run_at, now)
    out[#out + 1] = 'new:' .. state
    created = created + 1
  end
end
if #ready > 0 then redis.call('ZADD', prefix .. 'ready', unpack(ready)) end
if #delayed > 0 then redis.call('ZADD', prefix .. 'delayed', unpack(delayed)) end
if created > 0 then redis.call('HINCRBY', prefix .. 'stats', 'enqueued', created) end
if #ready > 0 then
  push_to_standby(prefix, queue, now)
  if redis.call('ZCARD', prefix .. 'ready') > 0 then redis.call('PUBLISH', prefix .. 'wake', '1') end
end
return out
