-- retry_dead: give dead jobs a fresh start (`dtq dead retry`).
-- KEYS[1] dead set. ARGV: prefix, now_ms, then the ids.
-- Each job leaves the dead set; `failures` returns to 0 (a fresh attempt count) while
-- `attempt`, the fencing token, keeps counting up at the next claim; the job is queued
-- at its priority and its history notes the retry (a record with event = 'retried').
-- Returns one outcome per id: 'queued', 'missing' (not a dead job) or 'malformed'
-- (the dead letter of a bad inbox entry: there is nothing to run).
local prefix, now = ARGV[1], tonumber(ARGV[2])
local out, woke = {}, false
for i = 3, #ARGV do
  local id = ARGV[i]
  local jkey = prefix .. 'job:' .. id
  local f = redis.call('HMGET', jkey, 'state', 'plugin', 'failures', 'attempt')
  local listed = redis.call('ZSCORE', prefix .. 'dead', id)
  if not listed or f[1] ~= 'dead' then
    if listed and not f[1] then redis.call('ZREM', prefix .. 'dead', id) end -- hash gone
    out[#out + 1] = 'missing'
  elseif not f[2] or f[2] == '' then
    out[#out + 1] = 'malformed'
  else
    redis.call('ZREM', prefix .. 'dead', id)
    redis.call('PERSIST', jkey)
    redis.call('HDEL', jkey, 'finished_at', 'run_at', 'cancel', 'progress', 'result')
    redis.call('HSET', jkey, 'failures', 0, 'error', '', 'holder', '')
    add_history(jkey, cjson.encode({event = 'retried', at = now,
      attempt = tonumber(f[4] or '0'),
      reason = 'retried by operator (' .. (f[3] or '0') .. ' failures reset to 0)'}))
    redis.call('HINCRBY', prefix .. 'stats', 'revived', 1)
    out[#out + 1] = make_available(prefix, id, jkey, nil, now)
    woke = true
  end
end
if woke then redis.call('PUBLISH', prefix .. 'wake', '1') end
return out
