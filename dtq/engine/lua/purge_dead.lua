-- purge_dead: delete dead jobs and their hashes (`dtq dead purge`).
-- KEYS[1] dead set. ARGV: prefix, then the ids. A job is deleted only while it is
-- listed as dead (a job retried meanwhile is left alone). Returns how many were purged.
local prefix = ARGV[1]
local purged = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', prefix .. 'dead', id) == 1 then
    local jkey = prefix .. 'job:' .. id
    local state = redis.call('HGET', jkey, 'state')
    if not state or state == 'dead' then redis.call('DEL', jkey) end
    purged = purged + 1
  end
end
if purged > 0 then redis.call('HINCRBY', prefix .. 'stats', 'purged', purged) end
return purged
