-- give_back_unknown: return jobs leased to a holder that does not know it holds them
-- (a claim whose reply was lost, a standby push that never arrived): unrun, and no
-- failure counted, where letting their lease run out would charge them an attempt.
-- KEYS[1] running set. ARGV: prefix, now_ms, holder, lease_before_ms, then the ids the
-- holder knows. Only leases ending before lease_before_ms are looked at: a job
-- claimed or pushed a moment ago may still be on its way to the holder.
-- Returns the ids given back.
local prefix, now, holder = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local known = {}
for i = 5, #ARGV do known[ARGV[i]] = true end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])) do
  local jkey = prefix .. 'job:' .. id
  if not known[id] and redis.pcall('HGET', jkey, 'holder') == holder then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HSET', jkey, 'holder', '')
    make_available(prefix, id, jkey, nil, now)
    out[#out + 1] = id
  end
end
if #out > 0 then redis.call('PUBLISH', prefix .. 'wake', '1') end
return out
