"""The worker's HTTP API over real HTTP: good jobs, bad input, state reads."""

from __future__ import annotations

import httpx
import pytest

from harness.environment import Environment


def post(env: Environment, content: bytes, name: str = "a.wav") -> httpx.Response:
    return httpx.post(f"{env.api_url}/jobs", files={"file": (name, content, "audio/wav")},
                      timeout=30)


def test_empty_upload_is_refused_with_400(env: Environment) -> None:
    response = post(env, b"")
    assert response.status_code == 400
    assert "empty" in response.json()["detail"]


def test_non_audio_upload_is_refused_with_415(env: Environment) -> None:
    response = post(env, b"%PDF-1.4 this is not audio at all\n" * 20, name="report.pdf")
    assert response.status_code == 415
    assert "not usable audio" in response.json()["detail"]


def test_request_without_file_is_refused_with_422(env: Environment) -> None:
    response = httpx.post(f"{env.api_url}/jobs", data={"max_retries": "1"}, timeout=10)
    assert response.status_code == 422


def test_negative_max_retries_is_refused(env: Environment) -> None:
    media, _ = env.make_media(seed=3, seconds=1.0)
    response = httpx.post(f"{env.api_url}/jobs", files={"file": ("a.wav", media.read_bytes())},
                          data={"max_retries": "-1"}, timeout=10)
    assert response.status_code == 422


def test_unknown_job_is_404_with_its_id(env: Environment) -> None:
    for path in ("", "/transcript", "/events"):
        response = httpx.get(f"{env.api_url}/jobs/nope{path}", timeout=10)
        assert response.status_code == 404
        assert "nope" in response.json()["detail"]


def test_transcript_is_409_until_completed_then_exact(env: Environment) -> None:
    job = env.submit(seed=5, seconds=2.0)
    early = httpx.get(f"{env.api_url}/jobs/{job.job_id}/transcript", timeout=10)
    assert early.status_code == 409 and "QUEUED" in early.json()["detail"]
    env.start_worker("w")
    assert env.wait_terminal(timeout=30)
    done = httpx.get(f"{env.api_url}/jobs/{job.job_id}/transcript", timeout=10)
    assert done.json()["text"] == job.expected_transcript
    status = httpx.get(f"{env.api_url}/jobs/{job.job_id}", timeout=10).json()
    assert status["state"] == "COMPLETED" and status["progress"] == 1.0
    events = httpx.get(f"{env.api_url}/jobs/{job.job_id}/events", timeout=10).json()
    assert events[0]["event"] == "job_queued" and events[-1]["event"] == "job_completed"


def test_cancel_queued_job_then_cancel_again_is_409(env: Environment) -> None:
    job = env.submit(seed=6, seconds=1.0)
    first = httpx.post(f"{env.api_url}/jobs/{job.job_id}/cancel", timeout=10)
    assert first.status_code == 200 and first.json()["state"] == "CANCELLED"
    second = httpx.post(f"{env.api_url}/jobs/{job.job_id}/cancel", timeout=10)
    assert second.status_code == 409 and "CANCELLED" in second.json()["detail"]


def test_openapi_schema_lists_the_endpoints(env: Environment) -> None:
    schema = httpx.get(f"{env.api_url}/openapi.json", timeout=10).json()
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/transcript", "/health"} <= set(
        schema["paths"])


@pytest.mark.slow
def test_health_is_503_while_redis_is_severed(env: Environment) -> None:
    assert env.proxy is not None
    assert httpx.get(f"{env.api_url}/health", timeout=10).status_code == 200
    env.proxy.disable()
    try:
        response = httpx.get(f"{env.api_url}/health", timeout=10)
        assert response.status_code == 503 and response.json()["ok"] is False
    finally:
        env.proxy.enable()
    assert httpx.get(f"{env.api_url}/health", timeout=10).status_code == 200
