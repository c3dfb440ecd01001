"""The Lua scripts of the ``upload`` job kind: each checkpoint is one atomic step.

Same rules as ``lua``: every write on behalf of a worker first passes the
fencing check (``fenced``: epoch, state, deadline), then records its effect
and appends its event to both streams in the same step. A part's checkpoint
(part number, ETag, size, offset) and the job's ``next_part`` /
``bytes_sent`` move together, so the next part and the file offset always
follow from what was committed, never from what a worker believed.

Key layout: ``constants``. Event fields: ``events``.
"""

from __future__ import annotations

from system_under_test.lua import PRELUDE, SUBMIT_BODY

# KEYS: job, events, queue, deadlines, upload targets. ARGV: as ``lua.SUBMIT`` (the fields
# include bucket and s3_key). An object belongs to one live upload job at a time: a second
# job for it is refused with 'busy:<holder id>' while the first is QUEUED or PROCESSING.
SUBMIT_UPLOAD = PRELUDE + """
do
  local bucket, key
  for i = 5, #ARGV, 2 do
    if ARGV[i] == 'bucket' then bucket = ARGV[i + 1] end
    if ARGV[i] == 's3_key' then key = ARGV[i + 1] end
  end
  local target = bucket .. '/' .. key
  local holder = redis.call('HGET', KEYS[5], target)
  if holder and holder ~= ARGV[2] then
    local state = redis.call('HGET', ARGV[1] .. ':job:' .. holder, 'state')
    if state == 'QUEUED' or state == 'PROCESSING' then return 'busy:' .. holder end
  end
  redis.call('HSET', KEYS[5], target, ARGV[2])
end
""" + SUBMIT_BODY

# KEYS: job, events. ARGV: job_id, worker, epoch, recovery, upload_id, token, data.
# Records the multipart upload right after it was created; the checkpoint starts at part 1.
BEGIN_UPLOAD = PRELUDE + """
local why = fenced(ARGV[3], ARGV[2], 'begin_upload')
if why then return why end
local have = redis.call('HGET', KEYS[1], 'upload_id')
if have == ARGV[5] then return retried(ARGV[3], ARGV[2], 'begin_upload', ARGV[5]) end
if have then return 'has_upload' end
redis.call('HSET', KEYS[1], 'upload_id', ARGV[5], 'upload_token', ARGV[6], 'next_part', 1,
           'bytes_sent', 0, 'parts_done', 0)
emit(ARGV[1], 'upload_started', ARGV[2], ARGV[3], ARGV[4], ARGV[7])
return 'ok'
"""

# KEYS: job, events, parts. ARGV: job_id, worker, epoch, recovery, part, etag, size, offset.
# Only the next part, at the offset where the committed ones end: 'out_of_order' otherwise,
# unless that very part (same ETag, size and offset) is committed already: 'duplicate'.
COMMIT_PART = PRELUDE + """
local why = fenced(ARGV[3], ARGV[2], 'commit_part')
if why then return why end
local part, size, offset = tonumber(ARGV[5]), tonumber(ARGV[7]), tonumber(ARGV[8])
local job = redis.call('HMGET', KEYS[1], 'upload_id', 'next_part', 'bytes_sent', 'finished_size')
if not job[1] then return 'no_upload' end
if part ~= tonumber(job[2]) or offset ~= tonumber(job[3]) then
  local have = redis.call('HGET', KEYS[3], ARGV[5])
  if have then
    local stored = cjson.decode(have)
    if stored.etag == ARGV[6] and stored.size == size and stored.offset == offset then
      return retried(ARGV[3], ARGV[2], 'commit_part', ARGV[5])
    end
  end
  return 'out_of_order'
end
redis.call('HSET', KEYS[3], ARGV[5], cjson.encode({etag = ARGV[6], size = size, offset = offset,
                                                   epoch = tonumber(ARGV[3]), worker = ARGV[2]}))
local sent = offset + size
local done = redis.call('HINCRBY', KEYS[1], 'parts_done', 1)
redis.call('HSET', KEYS[1], 'next_part', part + 1, 'bytes_sent', sent)
if job[4] and tonumber(job[4]) > 0 then
  redis.call('HSET', KEYS[1], 'progress', tostring(sent / tonumber(job[4])))
end
emit(ARGV[1], 'part_committed', ARGV[2], ARGV[3], ARGV[4],
     cjson.encode({part = part, size = size, offset = offset, etag = ARGV[6],
                   bytes_sent = sent, parts_done = done}))
return 'ok'
"""

# KEYS: job, events. ARGV: job_id, size.
# The writer says the source is complete at ``size`` bytes (the API's finish). Not fenced:
# it comes from outside any epoch. Replies 'ok', 'already:<size>', 'no_such_job',
# 'not_upload', 'shrunk:<bytes already sent>' or the terminal state that prevents it.
FINISH_SOURCE = PRELUDE + """
local job = redis.call('HMGET', KEYS[1], 'state', 'kind', 'finished_size', 'epoch', 'bytes_sent')
if not job[1] then return 'no_such_job' end
if job[2] ~= 'upload' then return 'not_upload' end
if job[3] then return 'already:' .. job[3] end
if job[1] ~= 'QUEUED' and job[1] ~= 'PROCESSING' then return job[1] end
if tonumber(ARGV[2]) < tonumber(job[5] or '0') then return 'shrunk:' .. job[5] end
redis.call('HSET', KEYS[1], 'finished_size', ARGV[2])
emit(ARGV[1], 'source_finished', 'api', job[4], '0', cjson.encode({size = tonumber(ARGV[2])}))
return 'ok'
"""

# KEYS: job, events. ARGV: job_id, worker, epoch, recovery, size, action, data.
# The source stopped growing without being finished. With action 'finalize' its current
# size becomes final; with 'fail' only the event is written (the worker then fails the job).
# 'finished' when the writer finished it meanwhile (nothing changes).
MARK_STALE = PRELUDE + """
local why = fenced(ARGV[3], ARGV[2], 'mark_stale')
if why then return why end
if redis.call('HGET', KEYS[1], 'stale_epoch') == ARGV[3] then
  return retried(ARGV[3], ARGV[2], 'mark_stale', '')
end
if redis.call('HEXISTS', KEYS[1], 'finished_size') == 1 then return 'finished' end
redis.call('HSET', KEYS[1], 'stale_epoch', ARGV[3])
if ARGV[6] == 'finalize' then redis.call('HSET', KEYS[1], 'finished_size', ARGV[5]) end
emit(ARGV[1], 'stream_stale', ARGV[2], ARGV[3], ARGV[4], ARGV[7])
return 'ok'
"""

# KEYS: job, events, parts, lease. ARGV: prefix, job_id, worker, epoch, recovery,
# object_etag, data. The object is complete in S3 and its metadata written: the job is
# COMPLETED and its checkpoint deleted. 'incomplete' unless every finished byte was committed.
COMPLETE_UPLOAD = PRELUDE + """
local prefix, job_id, worker, epoch, recovery = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if ended_by(epoch, worker, 'COMPLETED') then
  return retried(epoch, worker, 'complete_upload', '')
end
local why = fenced(epoch, worker, 'complete_upload')
if why then return why end
local job = redis.call('HMGET', KEYS[1], 'finished_size', 'bytes_sent', 'parts_done')
if not job[1] or tonumber(job[1]) ~= tonumber(job[2] or '-1') then return 'incomplete' end
move(KEYS[1], prefix, job_id, 'PROCESSING', 'COMPLETED')
redis.call('HSET', KEYS[1], 'object_etag', ARGV[6], 'progress', '1')
redis.call('DEL', KEYS[3], KEYS[4])
if recovery == '1' then
  emit(job_id, 'recovery_completed', worker, epoch, '1',
       cjson.encode({parts = tonumber(job[3]), size = tonumber(job[2])}))
end
emit(job_id, 'job_completed', worker, epoch, recovery, ARGV[7])
return 'ok'
"""
