"""The transcription service as the worker meets it: a real server process, the real openai SDK."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from openai import AsyncOpenAI, OpenAI

from harness.audio import expected_transcript, wav_bytes, words_for
from harness.ports import wait_until
from harness.services.latency import LatencyModel
from harness.services.transcription import CALL_LOG_FIELDS
from harness.services.transcription_server import TranscriptionService

API_KEY = "sk-crashlab-test-secret-0123456789"
WORDS = words_for(2024, 6)
AUDIO = wav_bytes(WORDS)
TEXT = expected_transcript(WORDS)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TranscriptionService]:
    svc = TranscriptionService(tmp_path_factory.mktemp("transcription"))
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()


@pytest.fixture(autouse=True)
def fresh_service(service: TranscriptionService) -> Iterator[None]:
    service.reset()
    yield
    service.clear_faults()  # releases anything a failed test left hanging


@pytest.fixture
def client(service: TranscriptionService) -> Iterator[OpenAI]:
    with OpenAI(base_url=service.base_url, api_key=API_KEY, max_retries=0, timeout=10) as c:
        yield c


def transcribe(client: OpenAI, audio: bytes = AUDIO, *, key: str | None = "key-1",
               job: str = "job-1", chunk: int = 0, **kwargs: Any) -> Any:
    headers = {"X-Crashlab-Job": job, "X-Crashlab-Chunk": str(chunk)}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.audio.transcriptions.create(
        model="whisper-1", file=("chunk.wav", audio, "audio/wav"), extra_headers=headers,
        **kwargs,
    )


def work_calls(service: TranscriptionService) -> list[dict[str, Any]]:
    """The logged transcription calls, without the status queries the tests make."""
    return [call for call in service.calls() if call["outcome"] != "status"]


def outcomes(service: TranscriptionService) -> list[str]:
    return [call["outcome"] for call in work_calls(service)]


def wait_for_calls(service: TranscriptionService, n: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(work_calls(service)) >= n, timeout=5, what=f"{n} logged call(s)")
    return work_calls(service)


def test_sdk_transcription_returns_the_exact_words(client: OpenAI) -> None:
    result = transcribe(client)
    assert result.text == TEXT


def test_text_and_verbose_json_formats_carry_the_same_words(client: OpenAI) -> None:
    assert transcribe(client, key="k-text", response_format="text") == TEXT
    verbose = transcribe(client, key="k-verbose", response_format="verbose_json")
    assert verbose.text == TEXT
    assert verbose.duration == pytest.approx(3.0)
    assert [segment.text for segment in verbose.segments] == WORDS


def test_repeat_with_same_key_is_not_new_work(client: OpenAI,
                                              service: TranscriptionService) -> None:
    first = transcribe(client, key="same-key")
    second = transcribe(client, key="same-key")

    assert first.text == second.text == TEXT
    assert outcomes(service) == ["new", "repeat"]
    billable = Counter((c["job_id"], c["chunk_index"]) for c in work_calls(service)
                       if c["outcome"] == "new")
    assert billable == {("job-1", 0): 1}


def test_calls_without_a_key_are_each_new_work(client: OpenAI,
                                               service: TranscriptionService) -> None:
    transcribe(client, key=None)
    transcribe(client, key=None)
    assert outcomes(service) == ["new", "new"]


def test_repeat_while_first_call_is_in_flight_waits_for_it_and_is_a_repeat(
    service: TranscriptionService,
) -> None:
    service.set_fault(latency_ms=800, count=1)  # only the first call is slow

    async def two_calls() -> tuple[str, str]:
        async with AsyncOpenAI(base_url=service.base_url, api_key=API_KEY, max_retries=0,
                               timeout=10) as aclient:
            async def call() -> str:
                result = await aclient.audio.transcriptions.create(
                    model="whisper-1", file=("chunk.wav", AUDIO, "audio/wav"),
                    extra_headers={"Idempotency-Key": "in-flight", "X-Crashlab-Job": "job-1",
                                   "X-Crashlab-Chunk": "3"})
                return result.text

            first = asyncio.create_task(call())
            for _ in range(200):
                status = await asyncio.to_thread(service.status, "in-flight")
                if status["status"] == "in_progress":
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the first call never became in_progress")
            second = asyncio.create_task(call())
            return await first, await second

    first_text, second_text = asyncio.run(two_calls())

    assert first_text == second_text == TEXT
    calls = work_calls(service)
    assert [c["outcome"] for c in calls] == ["new", "repeat"]
    assert calls[1]["ts"] > calls[0]["ts"]
    assert calls[1]["duration_ms"] > 100  # it waited for the first call


def test_key_reused_with_different_audio_is_refused(client: OpenAI,
                                                    service: TranscriptionService) -> None:
    transcribe(client, key="reused")
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        transcribe(client, wav_bytes(["zulu", "zulu"]), key="reused")
    assert "already used" in str(raised.value)
    assert outcomes(service) == ["new", "bad_request"]


def test_status_goes_from_unknown_to_in_progress_to_completed(
    client: OpenAI, service: TranscriptionService
) -> None:
    assert service.status("status-key") == {"key": "status-key", "status": "unknown"}
    service.set_fault(latency_ms=600)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(transcribe, client, key="status-key")
        wait_until(lambda: service.status("status-key")["status"] == "in_progress",
                   timeout=5, what="status in_progress")
        assert pending.result(timeout=10).text == TEXT
    assert service.status("status-key") == {"key": "status-key", "status": "completed",
                                            "text": TEXT}


def test_work_still_completes_when_the_client_gives_up_during_latency(
    service: TranscriptionService,
) -> None:
    service.set_fault(latency_ms=1000)
    with OpenAI(base_url=service.base_url, api_key=API_KEY, max_retries=0,
                timeout=0.3) as impatient:
        with pytest.raises(openai.APITimeoutError):
            transcribe(impatient, key="abandoned")

    wait_until(lambda: service.status("abandoned")["status"] == "completed", timeout=5,
               what="abandoned call completed")
    [call] = wait_for_calls(service, 1)
    assert (call["outcome"], call["status_code"], call["text"]) == ("new", 200, TEXT)


def test_injected_429_raises_rate_limit_error_then_next_call_succeeds(
    client: OpenAI, service: TranscriptionService
) -> None:
    service.set_fault(status=429, count=1)

    with pytest.raises(openai.RateLimitError) as raised:
        transcribe(client)
    assert raised.value.status_code == 429
    assert raised.value.response.headers["retry-after-ms"] == "50"
    assert raised.value.body["type"] == "rate_limit_error"  # type: ignore[index]

    assert transcribe(client).text == TEXT
    calls = work_calls(service)
    assert [(c["outcome"], c["status_code"], c["text"]) for c in calls] == [
        ("fault", 429, None), ("new", 200, TEXT)]


def test_injected_500_with_count_two_fails_twice_then_succeeds(
    client: OpenAI, service: TranscriptionService
) -> None:
    service.set_fault(status=500, count=2)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            transcribe(client)
    assert service.faults() == []
    assert transcribe(client).text == TEXT
    assert outcomes(service) == ["fault", "fault", "new"]


def test_faulted_call_stores_no_result(client: OpenAI, service: TranscriptionService) -> None:
    service.set_fault(status=503, count=1)
    with pytest.raises(openai.InternalServerError):
        transcribe(client, key="after-503")
    assert service.status("after-503")["status"] == "unknown"
    transcribe(client, key="after-503")
    assert outcomes(service) == ["fault", "new"]


def test_fault_for_one_job_leaves_other_jobs_alone(client: OpenAI,
                                                   service: TranscriptionService) -> None:
    service.set_fault(status=503, job_id="job-victim")

    assert transcribe(client, key="other", job="job-other").text == TEXT
    with pytest.raises(openai.InternalServerError):
        transcribe(client, key="victim", job="job-victim")
    assert [(c["job_id"], c["outcome"]) for c in work_calls(service)] == [
        ("job-other", "new"), ("job-victim", "fault")]


def test_latency_delays_the_answer(client: OpenAI, service: TranscriptionService) -> None:
    service.set_fault(latency_ms=400)
    started = time.monotonic()
    assert transcribe(client).text == TEXT
    assert time.monotonic() - started >= 0.4
    [call] = work_calls(service)
    assert call["duration_ms"] >= 400


def test_hang_holds_the_call_until_faults_are_cleared(client: OpenAI,
                                                      service: TranscriptionService) -> None:
    service.set_fault(hang=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(transcribe, client, key="hung")
        try:
            time.sleep(0.5)
            assert not pending.done()
            assert work_calls(service) == []
        finally:
            service.clear_faults()
        assert pending.result(timeout=10).text == TEXT
    [call] = work_calls(service)
    assert call["outcome"] == "new"
    assert call["duration_ms"] >= 500


def test_hung_call_abandoned_by_the_client_is_logged_as_a_fault(
    service: TranscriptionService,
) -> None:
    service.set_fault(hang=True)
    with OpenAI(base_url=service.base_url, api_key=API_KEY, max_retries=0,
                timeout=0.3) as impatient:
        with pytest.raises(openai.APITimeoutError):
            transcribe(impatient, key="hung-abandoned")

    [call] = wait_for_calls(service, 1)
    assert (call["outcome"], call["status_code"], call["text"]) == ("fault", 499, None)
    assert service.status("hung-abandoned")["status"] == "unknown"


def test_bad_audio_is_a_400_and_the_sdk_raises_bad_request(client: OpenAI,
                                                           service: TranscriptionService) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        transcribe(client, b"this is not a wav file", key="bad-audio")
    assert raised.value.status_code == 400
    assert raised.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert "not a WAV file" in raised.value.body["message"]  # type: ignore[index]

    [call] = work_calls(service)
    assert (call["outcome"], call["status_code"], call["text"]) == ("bad_request", 400, None)
    assert service.status("bad-audio")["status"] == "failed"


def test_request_without_a_model_is_a_400_in_openai_style(service: TranscriptionService) -> None:
    response = httpx.post(f"{service.base_url}/audio/transcriptions",
                          files={"file": ("chunk.wav", AUDIO, "audio/wav")}, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
    assert outcomes(service) == ["bad_request"]


def test_call_log_lines_have_exactly_the_documented_fields(client: OpenAI,
                                                           service: TranscriptionService) -> None:
    before = time.time()
    transcribe(client, key="log-a", job="job-7", chunk=4)
    transcribe(client, key="log-a", job="job-7", chunk=4)
    after = time.time()

    calls = work_calls(service)
    assert [list(call) for call in calls] == [list(CALL_LOG_FIELDS)] * 2
    assert [call["seq"] for call in calls] == [1, 2]
    first = calls[0]
    assert before <= first["ts"] <= after
    assert first["idempotency_key"] == "log-a"
    assert (first["job_id"], first["chunk_index"], first["model"]) == ("job-7", 4, "whisper-1")
    assert first["audio_sha256"] == hashlib.sha256(AUDIO).hexdigest()
    assert (first["status_code"], first["outcome"], first["text"]) == (200, "new", TEXT)
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert httpx.get(f"{service.url}/_admin/calls", timeout=5).json() == calls


def test_authorization_header_is_never_logged(client: OpenAI,
                                              service: TranscriptionService) -> None:
    transcribe(client)
    assert API_KEY not in service.call_log_path.read_text()
    assert API_KEY not in service.log_path.read_text()


def test_reset_forgets_results_and_empties_the_call_log(client: OpenAI,
                                                        service: TranscriptionService) -> None:
    transcribe(client, key="before-reset")
    service.reset()
    assert service.call_log_path.read_text() == ""
    assert service.status("before-reset")["status"] == "unknown"
    transcribe(client, key="before-reset")
    # seq restarts at 1 after the reset: the status query above is call 1
    assert [(c["seq"], c["outcome"]) for c in service.calls()] == [(1, "status"), (2, "new")]


def test_service_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    svc = TranscriptionService(tmp_path)
    try:
        svc.start()
        pid = svc.process.pid
        assert httpx.get(f"{svc.url}/_admin/health", timeout=5).json() == {"ok": True}
    finally:
        svc.stop()
    assert not svc.is_running()
    assert not psutil.pid_exists(pid)


def test_status_queries_are_logged_as_status_never_billable(
    service: TranscriptionService,
) -> None:
    service.status("job-9:4")
    [call] = service.calls()
    assert (call["outcome"], call["job_id"], call["chunk_index"]) == ("status", "job-9", 4)
    assert call["idempotency_key"] == "job-9:4"


def test_a_drawn_latency_delays_every_answer_until_reset(
        service: TranscriptionService, client: OpenAI) -> None:
    service.set_latency(LatencyModel(median_ms=400, seed=1))
    started = time.monotonic()
    assert transcribe(client).text == TEXT
    assert time.monotonic() - started >= 0.4
    (call,) = work_calls(service)
    assert call["outcome"] == "new" and call["duration_ms"] >= 400
    service.reset()
    started = time.monotonic()
    transcribe(client, key="key-2")
    assert time.monotonic() - started < 0.4


def test_a_bad_latency_is_refused_with_the_field_named(service: TranscriptionService) -> None:
    answer = httpx.post(f"{service.url}/_admin/latency", json={"median_ms": 50, "p99_ms": 10})
    assert answer.status_code == 422 and "p99_ms" in answer.text
    answer = httpx.post(f"{service.url}/_admin/latency", json={"median": 50})
    assert answer.status_code == 422 and "median" in answer.text


def test_a_service_that_ignores_keys_bills_every_call_and_still_reports_status(
        service: TranscriptionService, client: OpenAI) -> None:
    service.set_behaviour(honour_keys=False)
    transcribe(client, key="same-key")
    transcribe(client, key="same-key")
    transcribe(client, wav_bytes(words_for(7, 2)), key="same-key")  # no refusal either

    assert outcomes(service) == ["new", "new", "new"]
    assert service.status("same-key")["status"] == "completed"
    service.reset()
    transcribe(client, key="same-key")
    transcribe(client, key="same-key")
    assert outcomes(service) == ["new", "repeat"]  # reset: keys honoured again


def test_a_service_without_a_status_endpoint_answers_404_and_logs_it(
        service: TranscriptionService, client: OpenAI) -> None:
    transcribe(client, key="job-1:0")
    service.set_behaviour(status_endpoint=False)
    with pytest.raises(openai.NotFoundError):  # what the worker's SDK call meets
        client.get("/audio/transcriptions/status/job-1:0", cast_to=object)
    status = [call for call in service.calls() if call["outcome"] == "status"]
    assert [(call["status_code"], call["chunk_index"]) for call in status] == [(404, 0)]
