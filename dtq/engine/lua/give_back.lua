-- give_back: return claimed jobs unrun (a stop, or jobs claimed ahead that no worker
-- took in time); no failure is counted.
-- KEYS[1] running set. ARGV: prefix, now_ms, holder, then triples: id, attempt, score
-- (the job's ready score when claimed, '' if unknown: then it goes to the back).
-- Returns 1 (given back) or 0 (no longer ours) per job.
local prefix, now, holder = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local out = {}
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  local jkey = prefix .. 'job:' .. id
  if is_current(jkey, ARGV[i + 1], holder) then
    redis.call('ZREM', prefix .. 'running', id)
    redis.call('HSET', jkey, 'holder', '')
    make_available(prefix, id, jkey, nil, now, ARGV[i + 2])  -- back to its old place
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #out > 0 then redis.call('PUBLISH', prefix .. 'wake', '1') end
return out
