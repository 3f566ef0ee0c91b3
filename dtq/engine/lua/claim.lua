-- claim: promote due delayed jobs, then take up to `count` ready jobs under a lease.
-- KEYS[1] ready set. ARGV: prefix, now_ms, count, holder, lease_ms, standby_ms.
-- With standby_ms > 0, the slots left unfilled are registered in <prefix>standby for
-- that long, so that an enqueue hands its jobs to this holder at once (lib.lua).
-- Returns {next_delayed_ms or -1, then per job: "id\31attempt\31plugin\31timeout\31
-- memory_limit\31failures", data}.
local prefix, now = ARGV[1], tonumber(ARGV[2])
local count, holder, lease = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local standby = tonumber(ARGV[6] or '0')
local due = redis.call('ZRANGEBYSCORE', prefix .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', prefix .. 'delayed', id)
  local jkey = prefix .. 'job:' .. id
  if redis.call('EXISTS', jkey) == 1 then make_available(prefix, id, jkey, nil, now) end
end
local nxt = redis.call('ZRANGE', prefix .. 'delayed', 0, 0, 'WITHSCORES')
local out = {nxt[2] and tonumber(nxt[2]) or -1}
redis.call('HDEL', prefix .. 'standby', holder)
if count <= 0 or redis.call('EXISTS', prefix .. 'paused') == 1 then return out end
local taken = take_ready(prefix, holder, count, lease, now, out)
if standby > 0 and taken < count then
  redis.call('HSET', prefix .. 'standby', holder,
             (count - taken) .. '|' .. lease .. '|' .. (now + standby))
end
return out
