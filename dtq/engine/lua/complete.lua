-- complete: record successful attempts, fenced by attempt and holder.
-- KEYS[1] running set. ARGV: prefix, now_ms, holder, default_ttl_ms, then groups
-- of 4: id, attempt, result_json, record_json. Returns 1 (recorded, now or by an earlier
-- send of the same attempt) or 0 (stale) per job.
-- Written for the drain hot path: one HMGET, one HSET and one PEXPIRE per job, with
-- numbers passed as text (Redis formats each Lua number argument with %.17g).
local prefix, now_text, holder, ttl_text = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out, done_ids = {}, {}
for i = 5, #ARGV, 4 do
  local id, attempt = ARGV[i], ARGV[i + 1]
  local jkey = prefix .. 'job:' .. id
  local cur = redis.pcall('HMGET', jkey, 'state', 'attempt', 'holder', 'history', 'result_ttl',
                          'waiters')  -- pcall: a clobbered job hash is stale, not a failed batch
  if cur[1] == 'running' and cur[2] == attempt and cur[3] == holder then
    local history = cur[4] and (string.sub(cur[4], 1, -2) .. ',' .. ARGV[i + 3] .. ']')
                    or ('[' .. ARGV[i + 3] .. ']')
    redis.call('HSET', jkey, 'result', ARGV[i + 2], 'error', '', 'history', history,
               'state', 'done', 'finished_at', now_text, 'holder', '')
    redis.call('PEXPIRE', jkey, cur[5] and math.floor(tonumber(cur[5]) * 1000) or ttl_text)
    if cur[6] then notify_waiters(prefix, id, jkey) end
    done_ids[#done_ids + 1] = id
    out[#out + 1] = 1
  elseif cur[1] == 'done' and cur[2] == attempt then
    out[#out + 1] = 1  -- recorded already: a resend after a reply was lost
  else
    out[#out + 1] = 0
  end
end
if #done_ids > 0 then
  redis.call('ZREM', prefix .. 'running', unpack(done_ids))
  redis.call('HINCRBY', prefix .. 'stats', 'done', #done_ids)
end
return out
