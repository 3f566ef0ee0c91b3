-- cancel: remove a waiting job, or ask the holder of a running one to stop it.
-- KEYS[1] ready set. ARGV: prefix, now_ms, id, default_ttl_ms.
-- Returns {outcome, holder}: outcome is 'cancelled', 'requested' (running: the holder
-- stops it), 'finished:<state>' (too late) or 'missing'.
local prefix, now, id, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local jkey = prefix .. 'job:' .. id
local f = redis.call('HMGET', jkey, 'state', 'holder')
local state = f[1]
if not state then return {'missing', ''} end
if state == 'queued' or state == 'scheduled' then
  redis.call('ZREM', prefix .. 'ready', id)
  redis.call('ZREM', prefix .. 'delayed', id)
  redis.call('HSET', jkey, 'error', 'cancelled by operator')
  finish(prefix, id, jkey, 'cancelled', now, ttl)
  return {'cancelled', ''}
end
if state == 'running' then
  redis.call('HSET', jkey, 'cancel', '1')
  return {'requested', f[2] or ''}
end
return {'finished:' .. state, ''}
