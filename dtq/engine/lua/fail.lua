-- fail: record failed attempts (retry with backoff, dead-letter, or cancel), fenced.
-- KEYS[1] running set. ARGV: prefix, now_ms, holder, default_ttl_ms, default_max_attempts,
-- default_backoff_s, then groups of 6: id, attempt, reason, record_json, kind, jitter
-- (kind: 'retry', 'permanent' or 'cancelled'). Returns the new state per job, or 'stale'.
local prefix, now, holder = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local defaults = {ttl_ms = tonumber(ARGV[4]), max_attempts = ARGV[5], backoff = ARGV[6]}
local out = {}
for i = 7, #ARGV, 6 do
  local id, kind = ARGV[i], ARGV[i + 4]
  local jkey = prefix .. 'job:' .. id
  if not is_current(jkey, ARGV[i + 1], holder) then
    out[#out + 1] = 'stale'
  elseif kind == 'cancelled' then
    redis.call('HSET', jkey, 'error', ARGV[i + 2])
    add_history(jkey, ARGV[i + 3])
    finish(prefix, id, jkey, 'cancelled', now, defaults.ttl_ms)
    out[#out + 1] = 'cancelled'
  else
    local permanent = kind == 'permanent' and '1' or '0'
    out[#out + 1] = fail_attempt(prefix, id, jkey, ARGV[i + 2], ARGV[i + 3], permanent,
                                 ARGV[i + 5], now, defaults)
  end
end
return out
