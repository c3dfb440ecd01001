"""The Lua scripts behind every state change: each one is a single atomic step.

Every script that writes on behalf of a worker first checks the fencing
epoch (and the state), so a worker that lost its job can change nothing.
Each script records its effect, moves the job between state sets and appends
its event to both streams in the same step: there is no moment where a chunk
is committed but its event is missing, or the other way round.

Key layout: ``constants``. Event fields: ``events``. Keys derived from a job
id inside a script (claim, recovery) assume one Redis node, as the worker does.
"""

from __future__ import annotations

from system_under_test.constants import REJECTED, RETRIED

# Shared helpers, prepended to every script. KEYS[2] is always the global
# stream; a job's own stream is its hash key + ':events'.
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function emit_for(job_key, job_id, event, worker, epoch, recovery, data)
  local seq = redis.call('HINCRBY', job_key, 'seq', 1)
  local ts = now_ms()
  redis.call('HSET', job_key, 'updated_ms', ts)
  local fields = {'event', event, 'job_id', job_id, 'worker_id', worker,
                  'epoch', tostring(epoch), 'seq', tostring(seq), 'ts_ms', tostring(ts),
                  'recovery', recovery, 'data', data}
  redis.call('XADD', KEYS[2], '*', unpack(fields))
  redis.call('XADD', job_key .. ':events', '*', unpack(fields))
  return seq
end

-- the usual case: KEYS[1] is the job hash
local function emit(job_id, event, worker, epoch, recovery, data)
  return emit_for(KEYS[1], job_id, event, worker, epoch, recovery, data)
end

local function move(job_key, prefix, job_id, from_state, to_state)
  redis.call('SREM', prefix .. ':state:' .. from_state, job_id)
  redis.call('SADD', prefix .. ':state:' .. to_state, job_id)
  redis.call('HSET', job_key, 'state', to_state)
  -- a job that ends has no deadline left to watch (the monitor would find it ended anyway,
  -- but only once the deadline passed: until then the set would list a finished job)
  if to_state ~= 'QUEUED' and to_state ~= 'PROCESSING' then
    redis.call('ZREM', prefix .. ':deadlines', job_id)
  end
  -- an upload that ends any other way than COMPLETED leaves a multipart upload to abort,
  -- whoever ended it (a worker, the API, the timeout monitor, a takeover past max_retries)
  if (to_state == 'FAILED' or to_state == 'TIMED_OUT' or to_state == 'CANCELLED')
     and redis.call('HGET', job_key, 'kind') == 'upload' then
    redis.call('SADD', prefix .. ':upload:abort', job_id)
  end
end

-- nil when the caller still holds the job at this epoch, else the reason. A
-- refusal is recorded on the rejected-writes stream (diagnostics only: it is
-- not job state), so a harness can see that a zombie tried and was stopped.
local function fenced(epoch, worker, op)
  local job = redis.call('HMGET', KEYS[1], 'state', 'epoch', 'id', 'deadline_ms')
  local why = nil
  if not job[1] then why = 'no_such_job'
  elseif job[2] ~= epoch then why = 'stale_epoch'
  elseif job[1] ~= 'PROCESSING' then why = 'not_processing'
  elseif job[4] and now_ms() >= tonumber(job[4]) then why = 'deadline_passed' end
  if why then
    redis.call('XADD', '@REJECTED@', 'MAXLEN', '~', 10000, '*', 'job_id', job[3] or '',
               'worker_id', worker, 'epoch', epoch, 'current_epoch', job[2] or '',
               'state', job[1] or '', 'op', op, 'reason', why, 'ts_ms', tostring(now_ms()))
  end
  return why
end

-- A write that finds its own effect already in place: the retry of a command Redis
-- applied but whose reply was lost on the way back (the worker saw a dropped
-- connection and sent it again). Recorded on the retried-writes stream (diagnostics,
-- like the rejected writes) and answered 'duplicate': nothing changes.
local function retried(epoch, worker, op, item)
  redis.call('XADD', '@RETRIED@', 'MAXLEN', '~', 10000, '*',
             'job_id', redis.call('HGET', KEYS[1], 'id') or '', 'worker_id', worker,
             'epoch', epoch, 'op', op, 'item', item or '', 'ts_ms', tostring(now_ms()))
  return 'duplicate'
end

-- whether the owner of this epoch already ended the job in ``state`` (a retried ending)
local function ended_by(epoch, worker, state)
  local job = redis.call('HMGET', KEYS[1], 'state', 'epoch', 'worker_id')
  return job[1] == state and job[2] == epoch and job[3] == worker
end
""".replace("@REJECTED@", REJECTED).replace("@RETRIED@", RETRIED)
PRELUDE = _PRELUDE  # for the upload scripts (``upload_lua``)

# KEYS: job, events, queue, deadlines. ARGV: prefix, job_id, data, timeout_ms ("0": none),
# field, value, ...
SUBMIT_BODY = """
local prefix, job_id = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local ts = now_ms()
redis.call('HSET', KEYS[1], 'id', job_id, 'state', 'QUEUED', 'epoch', 0, 'retry_count', 0,
           'chunks_done', 0, 'progress', 0, 'seq', 0, 'created_ms', ts)
local data = ARGV[3]
local timeout = tonumber(ARGV[4])
if timeout > 0 then
  local deadline = ts + timeout
  redis.call('HSET', KEYS[1], 'deadline_ms', deadline)
  redis.call('ZADD', KEYS[4], deadline, job_id)
  local decoded = cjson.decode(data)
  decoded['deadline_ms'] = deadline
  data = cjson.encode(decoded)
end
redis.call('SADD', prefix .. ':state:QUEUED', job_id)
redis.call('LPUSH', KEYS[3], job_id)
emit(job_id, 'job_queued', 'api', 0, '0', data)
return 'ok'
"""
SUBMIT = _PRELUDE + SUBMIT_BODY

# KEYS: queue, events. ARGV: prefix, worker, lease_ms.
# Pops queued ids until one is still QUEUED (a cancelled job may linger in the list).
# Returns the job id, the new epoch and the job's hash as the claim left it (flat).
CLAIM = _PRELUDE + """
local prefix, worker, lease_ms = ARGV[1], ARGV[2], ARGV[3]
while true do
  local job_id = redis.call('RPOP', KEYS[1])
  if not job_id then return false end
  local job_key = prefix .. ':job:' .. job_id
  if redis.call('HGET', job_key, 'state') == 'QUEUED' then
    local epoch = redis.call('HINCRBY', job_key, 'epoch', 1)
    move(job_key, prefix, job_id, 'QUEUED', 'PROCESSING')
    redis.call('HSET', job_key, 'worker_id', worker, 'recovering', '0')
    redis.call('SET', job_key .. ':lease', worker .. '|' .. epoch, 'PX', lease_ms)
    emit_for(job_key, job_id, 'job_claimed', worker, epoch, '0', '{}')
    return {job_id, tostring(epoch), redis.call('HGETALL', job_key)}
  end
end
"""

# KEYS: job, lease. ARGV: worker, epoch, lease_ms. 1 renewed, 0 lost.
RENEW = _PRELUDE + """
if fenced(ARGV[2], ARGV[1], 'renew') then return 0 end
redis.call('SET', KEYS[2], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: deadlines, events, queue. ARGV: prefix, worker, limit.
# The timeout monitor: every job past its deadline that is still QUEUED or PROCESSING
# becomes TIMED_OUT; the epoch bump fences out a worker still holding it. Any worker
# may run it, any number of times: a job is timed out once. Returns the ids timed out.
EXPIRE_DUE = _PRELUDE + """
local prefix, worker = ARGV[1], ARGV[2]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local timed_out = {}
for _, job_id in ipairs(due) do
  redis.call('ZREM', KEYS[1], job_id)
  local job_key = prefix .. ':job:' .. job_id
  local job = redis.call('HMGET', job_key, 'state', 'deadline_ms')
  if job[1] == 'QUEUED' or job[1] == 'PROCESSING' then
    local epoch = redis.call('HINCRBY', job_key, 'epoch', 1)
    redis.call('LREM', KEYS[3], 0, job_id)
    redis.call('DEL', job_key .. ':lease')
    move(job_key, prefix, job_id, job[1], 'TIMED_OUT')
    local late = now - tonumber(job[2])
    redis.call('HSET', job_key, 'error', 'timed out: deadline passed ' .. late ..
               ' ms ago while ' .. job[1])
    emit_for(job_key, job_id, 'job_timed_out', worker, epoch, '0',
             cjson.encode({deadline_ms = tonumber(job[2]), now_ms = now,
                           previous_state = job[1]}))
    table.insert(timed_out, job_id)
  end
end
return timed_out
"""

# KEYS: job, events, plan. ARGV: job_id, worker, epoch, recovery, chunk_count,
# data, then index, plan-entry pairs.
COMMIT_PLAN = _PRELUDE + """
local why = fenced(ARGV[3], ARGV[2], 'commit_plan')
if why then return why end
if redis.call('HGET', KEYS[1], 'plan_epoch') == ARGV[3] then
  return retried(ARGV[3], ARGV[2], 'commit_plan', '')
end
redis.call('DEL', KEYS[3])
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'chunk_count', ARGV[5], 'plan_epoch', ARGV[3])
emit(ARGV[1], 'chunking_completed', ARGV[2], ARGV[3], ARGV[4], ARGV[6])
return 'ok'
"""

# KEYS: job, events, chunks. ARGV: job_id, worker, epoch, recovery, index, result.
# A chunk already committed is never overwritten: the answer is 'duplicate' and nothing changes.
COMMIT_CHUNK = _PRELUDE + """
local why = fenced(ARGV[3], ARGV[2], 'commit_chunk')
if why then return why end
if redis.call('HSETNX', KEYS[3], ARGV[5], ARGV[6]) == 0 then
  return retried(ARGV[3], ARGV[2], 'commit_chunk', ARGV[5])
end
local done = redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
local total = tonumber(redis.call('HGET', KEYS[1], 'chunk_count'))
redis.call('HSET', KEYS[1], 'progress', tostring(done / total))
emit(ARGV[1], 'chunk_committed', ARGV[2], ARGV[3], ARGV[4],
     cjson.encode({chunk = tonumber(ARGV[5]), chunks_done = done, chunk_count = total}))
return 'ok'
"""

# KEYS: job, events. ARGV: job_id, worker, epoch, recovery, event, data.
# An epoch-checked event with no other effect (processing_resumed), published at most once
# per epoch: the job's ``emitted_<event>`` field holds the epoch it was last published at.
EMIT = _PRELUDE + """
local why = fenced(ARGV[3], ARGV[2], 'emit')
if why then return why end
local mark = 'emitted_' .. ARGV[5]
if redis.call('HGET', KEYS[1], mark) == ARGV[3] then
  return retried(ARGV[3], ARGV[2], 'emit', ARGV[5])
end
redis.call('HSET', KEYS[1], mark, ARGV[3])
emit(ARGV[1], ARGV[5], ARGV[2], ARGV[3], ARGV[4], ARGV[6])
return 'ok'
"""

# KEYS: job, events, chunks, transcript, lease. ARGV: prefix, job_id, worker,
# epoch, recovery, transcript.
COMPLETE = _PRELUDE + """
local prefix, job_id, worker, epoch, recovery = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if ended_by(epoch, worker, 'COMPLETED') then return retried(epoch, worker, 'complete', '') end
local why = fenced(epoch, worker, 'complete')
if why then return why end
local total = tonumber(redis.call('HGET', KEYS[1], 'chunk_count'))
if not total or redis.call('HLEN', KEYS[3]) ~= total then return 'incomplete' end
redis.call('SET', KEYS[4], ARGV[6])
move(KEYS[1], prefix, job_id, 'PROCESSING', 'COMPLETED')
redis.call('HSET', KEYS[1], 'progress', '1')
redis.call('DEL', KEYS[5])
if recovery == '1' then
  emit(job_id, 'recovery_completed', worker, epoch, '1', cjson.encode({chunk_count = total}))
end
emit(job_id, 'job_completed', worker, epoch, recovery,
     cjson.encode({chunk_count = total, transcript_chars = string.len(ARGV[6])}))
return 'ok'
"""

# KEYS: job, events, lease. ARGV: prefix, job_id, worker, epoch, recovery, reason.
FAIL = _PRELUDE + """
local prefix, job_id, worker, epoch, recovery = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if ended_by(epoch, worker, 'FAILED') then return retried(epoch, worker, 'fail', '') end
local why = fenced(epoch, worker, 'fail')
if why then return why end
move(KEYS[1], prefix, job_id, 'PROCESSING', 'FAILED')
redis.call('HSET', KEYS[1], 'error', ARGV[6])
redis.call('DEL', KEYS[3])
local data = cjson.encode({reason = ARGV[6]})
if recovery == '1' then emit(job_id, 'recovery_failed', worker, epoch, '1', data) end
emit(job_id, 'job_failed', worker, epoch, recovery, data)
return 'ok'
"""

# KEYS: job, events, lease, queue. ARGV: prefix, job_id, worker, epoch.
# Graceful shutdown: back to the head of the queue, no retry counted.
RELEASE = _PRELUDE + """
local prefix, job_id, worker, epoch = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local why = fenced(epoch, worker, 'release')
if why then return why end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
move(KEYS[1], prefix, job_id, 'PROCESSING', 'QUEUED')
redis.call('DEL', KEYS[3])
redis.call('RPUSH', KEYS[4], job_id)
emit(job_id, 'job_released', worker, epoch, '0', '{}')
return 'ok'
"""

# KEYS: job, events, lease. ARGV: prefix, job_id, worker, lease_ms.
# Takes over a PROCESSING job whose lease is gone. Counts the lost worker as a retry;
# past max_retries the job fails instead. Returns {'claimed', epoch}, {'failed', reason}
# or {'skip', why}.
RECOVER = _PRELUDE + """
local prefix, job_id, worker, lease_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local job = redis.call('HMGET', KEYS[1], 'state', 'epoch', 'worker_id', 'max_retries')
if job[1] ~= 'PROCESSING' then return {'skip', 'not_processing'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'skip', 'lease_held'} end
local retries = redis.call('HINCRBY', KEYS[1], 'retry_count', 1)
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local previous = {previous_worker = job[3] or '', previous_epoch = tonumber(job[2]),
                  retry_count = retries}
redis.call('HSET', KEYS[1], 'worker_id', worker, 'recovering', '1')
emit(job_id, 'recovery_started', worker, epoch, '1', cjson.encode(previous))
if retries > tonumber(job[4] or '0') then
  local reason = 'lost its worker ' .. retries .. ' times (max_retries=' .. (job[4] or '0') .. ')'
  move(KEYS[1], prefix, job_id, 'PROCESSING', 'FAILED')
  redis.call('HSET', KEYS[1], 'error', reason)
  local data = cjson.encode({reason = reason})
  emit(job_id, 'recovery_failed', worker, epoch, '1', data)
  emit(job_id, 'job_failed', worker, epoch, '1', data)
  return {'failed', reason}
end
redis.call('SET', KEYS[3], worker .. '|' .. epoch, 'PX', lease_ms)
return {'claimed', tostring(epoch)}
"""

# KEYS: job, events, lease, queue. ARGV: prefix, job_id.
# Cancels a QUEUED or PROCESSING job; bumping the epoch fences out its worker.
CANCEL = _PRELUDE + """
local prefix, job_id = ARGV[1], ARGV[2]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'no_such_job' end
if state ~= 'QUEUED' and state ~= 'PROCESSING' then return state end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('LREM', KEYS[4], 0, job_id)
redis.call('DEL', KEYS[3])
move(KEYS[1], prefix, job_id, state, 'CANCELLED')
redis.call('HSET', KEYS[1], 'error', 'cancelled by request')
emit(job_id, 'job_cancelled', 'api', epoch, '0', cjson.encode({previous_state = state}))
return 'ok'
"""
