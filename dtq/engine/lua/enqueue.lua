-- enqueue: store jobs unless their id exists; wake idle supervisors.
-- KEYS[1] ready set (for the hash slot). ARGV: prefix, now_ms, queue, then groups
-- of 5: id, plugin, data_json, options_json ('' = defaults), run_at_ms ('' = now).
-- Jobs ready now go first to supervisors on standby (lib.lua push_to_standby).
-- Returns only the jobs that already existed, as pairs: position (1-based), state.
-- Every other job is new: 'scheduled' when run_at_ms > now_ms, else 'queued'.
-- The bulk path (one HGET and one HSET per job, no number formatting per job for a
-- job without options); sequence numbers and set insertions are done once per call.
local prefix, now = ARGV[1], tonumber(ARGV[2])
local queue, now_text = ARGV[3], ARGV[2]
local n = (#ARGV - 3) / 5
local seq = redis.call('INCRBY', prefix .. 'seq', n) - n
local existed, ready, delayed, created = {}, {}, {}, 0
for j = 0, n - 1 do
  local i = 4 + j * 5
  local id = ARGV[i]
  local jkey = prefix .. 'job:' .. id
  local existing = redis.call('HGET', jkey, 'state')
  if existing then
    existed[#existed + 1] = j + 1
    existed[#existed + 1] = existing
  elseif ARGV[i + 3] == '' and ARGV[i + 4] == '' then  -- the common case: no options
    ready[#ready + 1] = seq + j + 1
    ready[#ready + 1] = id
    redis.call('HSET', jkey, 'id', id, 'plugin', ARGV[i + 1], 'data', ARGV[i + 2],
               'enqueued_at', now_text, 'state', 'queued')
    created = created + 1
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
return existed
