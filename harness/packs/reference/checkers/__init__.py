"""The reference pack's domain checkers: transcripts, chunks, epochs, uploads, leases.

Each module registers its checkers in the ``reference`` suite
(``harness.checkers.registry``); the package is named by the pack's
``crashlab.checkers`` entry point, so the core finds them without importing
the pack.

    jobs_terminal            snapshot   every submitted job ended in an expected state
    failure_justified        failures   a FAILED job says why, and the reason is the expected one
    transcript_exact         snapshot   completed transcripts equal the expected ones
    chunk_committed_once     chunks     one commit per chunk, matching the final state
    external_work_per_chunk  chunks     billable transcription work once per chunk
    no_work_after_commit     redundant  no chunk transcribed again after it was committed
    recovery_paired          recovery   every recovery resumes and closes
    events_ordered           ordering   per-job seq 1..n, timestamps in order
    events_once              events_once  no event twice for one job, epoch and chunk or part
    progress_monotonic       chunks     chunks_done rises by one per commit
    counters_agree           counters   chunks_done, progress, bytes_sent match what they count
    stale_epoch_rejected     ordering   one owner per epoch, no stale or zombie writes
    takeover_justified       takeover   a job is taken over only after its lease lapsed
    retry_accounting         recovery   retry_count counts recoveries; max_retries enforced
    state_index_exclusive    snapshot   each job in exactly its own state index
    indexes_consistent       indexes    queue only QUEUED jobs, leases only at the current
                                        epoch of PROCESSING ones, deadlines only live jobs
    timeout_enforced         timeouts   a job past its deadline ends TIMED_OUT
    upload_byte_exact        upload     uploads byte-exact from contiguous parts, no orphans
    graceful_stop_honoured   graceful   a SIGTERMed worker's jobs released, or recovered if killed
"""
