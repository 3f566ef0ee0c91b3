-- recover: requeue jobs whose lease ran out (their supervisor stopped heartbeating),
-- or, with a holder name, every job that name held (a supervisor restarted under it).
-- KEYS[1] running set. ARGV: prefix, now_ms, default_ttl_ms, default_max_attempts,
-- default_backoff_s, limit, holder ('' = by lease only), jitter.
-- Returns pairs: id, new state.
local prefix, now = ARGV[1], tonumber(ARGV[2])
local defaults = {ttl_ms = tonumber(ARGV[3]), max_attempts = ARGV[4], backoff = ARGV[5]}
local limit, holder, jitter = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local ids
if holder == '' then
  ids = redis.call('ZRANGEBYSCORE', prefix .. 'running', '-inf', now, 'LIMIT', 0, limit)
else
  ids = {}
  for _, id in ipairs(redis.call('ZRANGE', prefix .. 'running', 0, -1)) do
    if redis.call('HGET', prefix .. 'job:' .. id, 'holder') == holder then ids[#ids + 1] = id end
  end
end
local out = {}
for _, id in ipairs(ids) do
  local jkey = prefix .. 'job:' .. id
  local f = redis.call('HMGET', jkey, 'holder', 'attempt', 'state')
  if f[3] ~= 'running' then
    redis.call('ZREM', prefix .. 'running', id)
  else
    local why = holder == '' and 'lease expired: supervisor ' .. (f[1] or '?') ..
      ' stopped heartbeating' or 'supervisor ' .. holder .. ' restarted while running it'
    local record = cjson.encode({attempt = tonumber(f[2]), holder = f[1], reason = why,
                                 finished_at = now})
    out[#out + 1] = id
    out[#out + 1] = fail_attempt(prefix, id, jkey, why, record, '0', jitter, now, defaults)
  end
end
if #out > 0 then redis.call('PUBLISH', prefix .. 'wake', '1') end
return out
