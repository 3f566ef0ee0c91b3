-- renew: extend the leases of jobs a supervisor still runs.
-- KEYS[1] running set. ARGV: prefix, now_ms, holder, lease_ms, then pairs: id, attempt.
-- Returns {lost ids..., '|', ids whose cancel was requested...}: a lost job is no
-- longer ours (recovered after our lease ran out) and its worker should stop.
local prefix, now, holder, lease = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local lost, cancel = {}, {}
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local jkey = prefix .. 'job:' .. id
  if is_current(jkey, ARGV[i + 1], holder) then
    redis.call('ZADD', prefix .. 'running', 'XX', now + lease, id)
    if redis.call('HGET', jkey, 'cancel') then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
lost[#lost + 1] = '|'
for _, id in ipairs(cancel) do lost[#lost + 1] = id end
return lost
