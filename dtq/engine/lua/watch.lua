-- watch: register a waiter for a job's end, unless it has ended already.
-- KEYS[1] the job hash. ARGV: none. Returns the state: a finished state means
-- "read it now"; any other means a token will be pushed to <prefix>notify:<id>.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'done' or state == 'dead' or state == 'cancelled' then return state end
redis.call('HINCRBY', KEYS[1], 'waiters', 1)
return state
