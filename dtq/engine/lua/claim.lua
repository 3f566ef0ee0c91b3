-- claim: promote due delayed jobs, then take up to `count` ready jobs under a lease.
-- KEYS[1] ready set. ARGV: prefix, now_ms, count, holder, lease_ms.
-- Returns {next_delayed_ms or -1, then per job: "id\31attempt\31plugin\31timeout\31
-- memory_limit\31failures", data}.
local prefix, now = ARGV[1], tonumber(ARGV[2])
local count, holder, lease = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', prefix .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', prefix .. 'delayed', id)
  local jkey = prefix .. 'job:' .. id
  if redis.call('EXISTS', jkey) == 1 then make_available(prefix, id, jkey, nil, now) end
end
local nxt = redis.call('ZRANGE', prefix .. 'delayed', 0, 0, 'WITHSCORES')
local out = {nxt[2] and tonumber(nxt[2]) or -1}
if count <= 0 or redis.call('EXISTS', prefix .. 'paused') == 1 then return out end
local popped = redis.call('ZPOPMIN', prefix .. 'ready', count)
local leases = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local jkey = prefix .. 'job:' .. id
  local f = redis.call('HMGET', jkey, 'plugin', 'data', 'timeout', 'memory_limit', 'failures',
                       'attempt')
  if f[1] then
    local attempt = tonumber(f[6] or '0') + 1
    redis.call('HSET', jkey, 'attempt', attempt, 'state', 'running', 'holder', holder,
               'started_at', now)
    leases[#leases + 1] = now + lease
    leases[#leases + 1] = id
    -- ids, plugins and numbers never hold \31: one string of metadata, then the data
    out[#out + 1] = id .. '\31' .. attempt .. '\31' .. f[1] .. '\31' .. (f[3] or '') .. '\31' ..
                    (f[4] or '') .. '\31' .. (f[5] or '0')
    out[#out + 1] = f[2]
  end
end
if #leases > 0 then redis.call('ZADD', prefix .. 'running', unpack(leases)) end
return out
