-- Shared helpers, prepended to every dtq script (see dtq/engine/scripts.py).
-- Job hashes live at <prefix>job:<id>; every key of a queue shares <prefix>,
-- which carries the queue's hash tag.
local PRIORITY_SHIFT = 4398046511104 -- 2^42: strict priority bands, FIFO within one

local function ready_score(prefix, priority)
  local seq = redis.call('INCR', prefix .. 'seq')
  return -tonumber(priority) * PRIORITY_SHIFT + seq
end

-- Put a job that is not running back where it can be claimed: ready now, or delayed.
-- `score` (optional, '' = none): its place in the ready set, kept from an earlier claim.
local function make_available(prefix, id, jkey, run_at, now, score)
  if run_at and run_at > now then
    redis.call('ZADD', prefix .. 'delayed', run_at, id)
    redis.call('HSET', jkey, 'state', 'scheduled', 'run_at', run_at)
    return 'scheduled'
  end
  if not score or score == '' then
    score = ready_score(prefix, redis.call('HGET', jkey, 'priority') or 0)
  end
  redis.call('ZADD', prefix .. 'ready', score, id)
  redis.call('HSET', jkey, 'state', 'queued')
  return 'queued'
end

-- Append one attempt record (a JSON object) to the job's history (a JSON array).
local function add_history(jkey, record)
  local history = redis.call('HGET', jkey, 'history')
  if not history or history == '' then
    history = '[' .. record .. ']'
  else
    history = string.sub(history, 1, -2) .. ',' .. record .. ']'
  end
  redis.call('HSET', jkey, 'history', history)
end

-- Wake clients blocked in `wait` on this job (they registered in the 'waiters' field).
local function notify_waiters(prefix, id, jkey)
  local waiters = tonumber(redis.call('HGET', jkey, 'waiters') or '0')
  if waiters > 0 then
    local nkey = prefix .. 'notify:' .. id
    for _ = 1, waiters do redis.call('RPUSH', nkey, '1') end
    redis.call('PEXPIRE', nkey, 60000)
    redis.call('HDEL', jkey, 'waiters')
  end
end

-- Move a finished job out of the running set and give it its result TTL.
local function finish(prefix, id, jkey, state, now, default_ttl_ms)
  redis.call('HSET', jkey, 'state', state, 'finished_at', now, 'holder', '')
  redis.call('ZREM', prefix .. 'running', id)
  redis.call('HINCRBY', prefix .. 'stats', state, 1)
  if state == 'dead' then
    redis.call('ZADD', prefix .. 'dead', now, id)
  else
    local ttl = redis.call('HGET', jkey, 'result_ttl')
    local ttl_ms = ttl and math.floor(tonumber(ttl) * 1000) or default_ttl_ms
    redis.call('PEXPIRE', jkey, ttl_ms)
  end
  notify_waiters(prefix, id, jkey)
end

-- One failed attempt: retry after an exponential backoff with jitter, or dead-letter.
-- Returns the job's new state.
local function fail_attempt(prefix, id, jkey, reason, record, permanent, jitter, now, defaults)
  redis.call('HSET', jkey, 'error', reason)
  add_history(jkey, record)
  redis.call('HINCRBY', prefix .. 'stats', 'failed', 1)
  local failures = redis.call('HINCRBY', jkey, 'failures', 1)
  local max_attempts = tonumber(redis.call('HGET', jkey, 'max_attempts') or defaults.max_attempts)
  if permanent == '1' or failures >= max_attempts then
    finish(prefix, id, jkey, 'dead', now, defaults.ttl_ms)
    return 'dead'
  end
  local base = tonumber(redis.call('HGET', jkey, 'backoff') or defaults.backoff)
  local delay = math.min(base * 2 ^ (failures - 1), 3600) * (0.5 + tonumber(jitter))
  redis.call('ZREM', prefix .. 'running', id)
  redis.call('HSET', jkey, 'holder', '')
  redis.call('HINCRBY', prefix .. 'stats', 'retried', 1)
  return make_available(prefix, id, jkey, now + math.floor(delay * 1000), now)
end

-- The hash of a new job, in one HSET (its options as fields of their own). `attempt`
-- and `failures` are absent until the first claim and failure (absent = 0).
local function write_job(jkey, id, plugin, data, opts, state, run_at, now)
  local args = {'id', id, 'plugin', plugin, 'data', data, 'enqueued_at', now, 'state', state}
  if state == 'scheduled' then
    args[#args + 1] = 'run_at'
    args[#args + 1] = run_at
  end
  for k, v in pairs(opts) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  redis.call('HSET', jkey, unpack(args))
end

-- Store one validated job unless its id exists; returns 'new:<state>' or the existing
-- state. One HSET and one ZADD per job: this is the bulk-enqueue hot path.
local function store_job(prefix, id, plugin, data, opts_json, run_at, now)
  local jkey = prefix .. 'job:' .. id
  local existing = redis.call('HGET', jkey, 'state')
  if existing then return existing end
  local opts = opts_json == '' and {} or cjson.decode(opts_json)
  local state
  run_at = tonumber(run_at)
  if run_at and run_at > now then
    redis.call('ZADD', prefix .. 'delayed', run_at, id)
    state = 'scheduled'
  else
    redis.call('ZADD', prefix .. 'ready', ready_score(prefix, opts.priority or 0), id)
    state = 'queued'
  end
  write_job(jkey, id, plugin, data, opts, state, run_at, now)
  return 'new:' .. state
end

-- pcall: a job hash overwritten with another type is no longer a job we hold; an error
-- here would fail the whole call, every other job of a renewal or outcome batch with it.
local function is_current(jkey, attempt, holder)
  local cur = redis.pcall('HMGET', jkey, 'state', 'attempt', 'holder')
  return cur[1] == 'running' and cur[2] == attempt and cur[3] == holder
end

-- Take up to `count` ready jobs for `holder` under a lease: the claim itself.
-- Appends to `out` per job: "id\31attempt\31plugin\31timeout\31memory_limit\31failures
-- \31score", data (ids, plugins and numbers never hold \31). The score is the job's place
-- in the ready set, as Redis wrote it: a job given back unrun returns to that place.
-- Returns how many were taken.
-- Numbers go to Redis as text made once per call: Redis formats every Lua number
-- argument with %.17g, which cost more than the rest of the claim.
local function take_ready(prefix, holder, count, lease, now, out)
  local popped = redis.call('ZPOPMIN', prefix .. 'ready', count)
  local now_text = string.format('%d', now)
  local until_text = string.format('%d', now + lease)
  local leases = {}
  for i = 1, #popped, 2 do
    local id = popped[i]
    local jkey = prefix .. 'job:' .. id
    local f = redis.call('HMGET', jkey, 'plugin', 'data', 'timeout', 'memory_limit', 'failures',
                         'attempt')
    if f[1] then
      local attempt = f[6] and string.format('%d', tonumber(f[6]) + 1) or '1'
      redis.call('HSET', jkey, 'attempt', attempt, 'state', 'running', 'holder', holder,
                 'started_at', now_text)
      leases[#leases + 1] = until_text
      leases[#leases + 1] = id
      out[#out + 1] = id .. '\31' .. attempt .. '\31' .. f[1] .. '\31' .. (f[3] or '') .. '\31' ..
                      (f[4] or '') .. '\31' .. (f[5] or '0') .. '\31' .. popped[i + 1]
      out[#out + 1] = f[2]
    end
  end
  if #leases > 0 then redis.call('ZADD', prefix .. 'running', unpack(leases)) end
  return #leases / 2
end

-- Hand ready jobs straight to idle supervisors that registered free slots (standby),
-- claiming for them and publishing the claim on their control channel: an idle
-- pool starts a new job without a claim round trip of its own. The message is text,
-- not JSON: "push", the queue, then per job its claim metadata and data, joined by
-- \30 (which neither holds: JSON text has no raw control characters), so the
-- supervisor splits it instead of decoding the data as a JSON string.
local function push_to_standby(prefix, queue, now)
  if redis.call('EXISTS', prefix .. 'paused') == 1 then return end
  local skey = prefix .. 'standby'
  local regs = redis.call('HGETALL', skey)
  for i = 1, #regs, 2 do
    local holder = regs[i]
    local slots, lease, expires = string.match(regs[i + 1], '^(%d+)|(%d+)|(%d+)$')
    slots, lease, expires = tonumber(slots), tonumber(lease), tonumber(expires)
    if not slots or expires < now then
      redis.call('HDEL', skey, holder)
    else
      local jobs = {}
      local taken = take_ready(prefix, holder, slots, lease, now, jobs)
      if taken > 0 then
        redis.call('PUBLISH', 'dtq:control:' .. holder,
                   'push\30' .. queue .. '\30' .. table.concat(jobs, '\30'))
      end
      if taken >= slots then
        redis.call('HDEL', skey, holder)
      else
        redis.call('HSET', skey, holder, (slots - taken) .. '|' .. lease .. '|' .. expires)
      end
      if taken < slots then return end  -- the ready set is empty
    end
  end
end
