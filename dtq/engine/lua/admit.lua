-- admit: move raw inbox entries (pushed by producers with plain RPUSH) into jobs,
-- after the caller validated them. The entries are taken only if the inbox still
-- starts with exactly them, so two supervisors never admit the same entry twice.
-- KEYS[1] inbox list. ARGV: prefix, now_ms, n, then n groups of 7: raw, ok ('1'/'0'),
-- id, plugin, data_json, options_json, run_at_ms (for ok) | reason (for not ok, in 'plugin').
-- Returns -1 when the inbox changed under us (caller retries), else the count admitted.
local prefix, now, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
if #head ~= n then return -1 end
for i = 1, n do
  if head[i] ~= ARGV[3 + (i - 1) * 7 + 1] then return -1 end
end
redis.call('LTRIM', KEYS[1], n, -1)
local woke = false
for i = 1, n do
  local b = 3 + (i - 1) * 7
  local raw, ok, id = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  if ok == '1' then
    local state = store_job(prefix, id, ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], now)
    if state == 'new:queued' then woke = true end
    if string.sub(state, 1, 4) == 'new:' then redis.call('HINCRBY', prefix .. 'stats', 'enqueued', 1) end
  else
    local jkey = prefix .. 'job:' .. id
    if redis.call('EXISTS', jkey) == 1 then  -- never overwrite a job a producer named bad-<id>
      id = id .. '-' .. now .. '-' .. i
      jkey = prefix .. 'job:' .. id
    end
    redis.call('HSET', jkey, 'id', id, 'plugin', '', 'raw', raw, 'enqueued_at', now,
               'error', 'malformed job: ' .. ARGV[b + 4],
               'history', cjson.encode({{reason = 'malformed job: ' .. ARGV[b + 4]}}))
    redis.call('HINCRBY', prefix .. 'stats', 'malformed', 1)
    finish(prefix, id, jkey, 'dead', now, 0)
  end
end
if woke then redis.call('PUBLISH', prefix .. 'wake', '1') end
return n
