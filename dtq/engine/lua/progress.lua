-- progress: record a running job's latest progress (never recreates a finished, expired job).
-- KEYS[1] the job hash. ARGV[1] the progress as JSON.
if redis.call('HGET', KEYS[1], 'state') == 'running' then
  redis.call('HSET', KEYS[1], 'progress', ARGV[1])
end
return 1
