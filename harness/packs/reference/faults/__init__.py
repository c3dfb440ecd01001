"""The reference pack's domain faults: damage to its files, its service, its leases.

Each module registers its kind (``harness.faults.registry``); the package is
named by the pack's ``crashlab.faults`` entry point, so a scenario file may
use these kinds and the core never imports them.

    corrupt_chunk     files             corrupt or delete a chunk file, often at a crash
    delete_source     files             delete the job's original media
    service_errors    service_errors    the transcription service answers 429/500/503
    pause_past_lease  pause_past_lease  a worker frozen past its lease: a zombie writer
    sever_s3          sever_s3          the workers' S3 proxies disabled for a while
    s3_toxic          s3_toxic          latency, reset_peer or timeout on the S3 proxies
    s3_errors         s3_errors         S3 answers 503 SlowDown / 500 InternalError (the gate)
    s3_lost_reply     s3_lost_reply     S3 does the request, its answer never comes back

``s3_proxy`` holds what the S3 kinds share (the proxies, the gate, ``workers``).
"""
