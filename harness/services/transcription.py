"""An OpenAI-compatible transcription service that keeps books and takes faults.

Run it as ``python -m harness.services.transcription --port P --call-log FILE``
(or start it with ``harness.services.transcription_server.TranscriptionService``).

``POST /v1/audio/transcriptions`` accepts exactly what the official ``openai``
SDK sends and "transcribes" workload audio with ``harness.audio.decode_wav``.

Idempotency (header ``Idempotency-Key``): the first call with a key does the
work and stores the result; a later call with the key gets the stored result
and is logged as ``repeat``. A call whose key is still in flight waits for the
first one and is a ``repeat`` too. A key reused with different audio is
refused (422). A call that failed on bad audio stores nothing reusable.

Work is done even if the client goes away mid-call (as a real service would
bill it): a worker killed during injected latency leaves a ``new`` entry in
the log and ``completed`` at ``GET /v1/audio/transcriptions/status/{key}``.

Behaviour (``/_admin/behaviour``): a service that *ignores* idempotency keys
does the work (and bills it) for every call, key or not, as the real OpenAI
endpoint does; it still records each key's last result, so its status endpoint
can answer. A service without a status endpoint answers every status query 404
(logged as a ``status`` call with that code), so a worker cannot learn that
work was done.

Faults (``/_admin/faults``) apply before the idempotency lookup, as if the
call never reached the work: an error status answers at once (after any
latency), a hang holds the call until the fault is cleared (then it proceeds
normally) or the client disconnects (logged with status 499).

Latency (``/_admin/latency``, a ``harness.services.latency.LatencyModel``):
every transcription call waits a drawn latency before it is answered, the
work done at once and billed even if the client leaves meanwhile; a fault's
latency comes on top.

Every transcription call is appended, flushed, as one JSON line to the call
log with the fields in ``CALL_LOG_FIELDS``; ``outcome == "new"`` per
``(job_id, chunk_index)`` is the billable work. Status queries are logged
too, with outcome ``status`` (never billable; the job and chunk come from a
key of the form ``<job>:<chunk>``). The Authorization header is never read
or logged.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from harness.audio import SEGMENT_SECONDS, audio_seconds, decode_wav
from harness.ports import LOOPBACK
from harness.services.latency import LatencyModel

CALL_LOG_FIELDS: tuple[str, ...] = (
    "seq", "ts", "idempotency_key", "job_id", "chunk_index", "model", "audio_sha256",
    "status_code", "outcome", "text", "duration_ms",
)
"""Keys of every call-log line, in order. ``ts`` is when the call arrived."""

Outcome = Literal["new", "repeat", "fault", "bad_request", "status"]
RESPONSE_FORMATS = ("json", "text", "verbose_json")
CLIENT_CLOSED = 499
"""Logged status of a hung call whose client went away (nothing was sent)."""

_HOLD_POLL_SECONDS = 0.02


class Behaviour(BaseModel):
    """Body of ``POST /_admin/behaviour``: how the service treats keys and status queries."""

    model_config = ConfigDict(extra="forbid")

    idempotency_keys: Literal["honoured", "ignored"] = "honoured"
    status_endpoint: bool = True


class FaultSpec(BaseModel):
    """Body of ``POST /_admin/faults``."""

    model_config = ConfigDict(extra="forbid")

    status: int | None = None
    count: int | None = Field(default=None, ge=1)
    latency_ms: int = Field(default=0, ge=0)
    hang: bool = False
    job_id: str | None = None
    chunk_index: int | None = None
    replace: bool = True
    """Replace every active fault (default) or add this one to them."""

    @field_validator("status")
    @classmethod
    def _error_status(cls, value: int | None) -> int | None:
        if value is not None and not 400 <= value <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        return value


@dataclass(eq=False)
class FaultRule:
    """An active fault; ``count`` is what is left (``None``: until cleared)."""

    id: int
    status: int | None
    count: int | None
    latency_ms: int
    hang: bool
    job_id: str | None
    chunk_index: int | None
    fired: int = 0

    def matches(self, job_id: str | None, chunk_index: int | None) -> bool:
        return (self.job_id is None or self.job_id == job_id) and (
            self.chunk_index is None or self.chunk_index == chunk_index
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "count": self.count,
            "latency_ms": self.latency_ms, "hang": self.hang, "job_id": self.job_id,
            "chunk_index": self.chunk_index, "fired": self.fired,
        }


@dataclass
class _Result:
    words: list[str]
    seconds: float

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass
class _Entry:
    """What the service knows about one idempotency key."""

    audio_sha256: str
    status: Literal["in_progress", "completed", "failed"] = "in_progress"
    result: _Result | None = None
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Call:
    """One transcription call being served, and what its log line will say."""

    generation: int
    ts: float
    started: float
    idempotency_key: str | None
    job_id: str | None
    chunk_index: int | None
    model: str | None = None
    audio_sha256: str | None = None


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def error_body(message: str, error_type: str, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _fault_response(status: int) -> JSONResponse:
    if status == 429:
        body = error_body("Rate limit reached (crashlab injected fault).", "rate_limit_error",
                          code="rate_limit_exceeded")
        return JSONResponse(body, status_code=status, headers={"retry-after-ms": "50"})
    error_type = "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse(error_body(f"crashlab injected fault: HTTP {status}", error_type),
                        status_code=status)


def _render(result: _Result, response_format: str) -> Response:
    if response_format == "text":
        return PlainTextResponse(result.text)
    if response_format == "verbose_json":
        segments = [
            {"id": i, "seek": 0, "start": i * SEGMENT_SECONDS, "end": (i + 1) * SEGMENT_SECONDS,
             "text": word, "tokens": [], "temperature": 0.0, "avg_logprob": 0.0,
             "compression_ratio": 1.0, "no_speech_prob": 0.0}
            for i, word in enumerate(result.words)
        ]
        return JSONResponse({"task": "transcribe", "language": "english",
                             "duration": result.seconds, "text": result.text,
                             "segments": segments})
    return JSONResponse({"text": result.text})


def _transcribe(audio: bytes) -> _Result:
    return _Result(words=decode_wav(audio), seconds=audio_seconds(audio))


def _optional_int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


async def _read_form(request: Request) -> tuple[bytes, str, str]:
    """The audio, model and response format of a transcription request."""
    try:
        async with request.form() as form:
            upload = form.get("file")
            model = form.get("model")
            response_format = form.get("response_format", "json")
            stream = form.get("stream")
            if not isinstance(upload, UploadFile):
                raise _BadRequest("you must provide an audio file as the 'file' form field", "file")
            audio = await upload.read()
    except HTTPException as exc:  # malformed multipart body
        raise _BadRequest(f"malformed multipart body: {exc.detail}") from None
    if not isinstance(model, str) or not model:
        raise _BadRequest("you must provide a model parameter", "model")
    if response_format not in RESPONSE_FORMATS:
        raise _BadRequest(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}",
                          "response_format")
    if isinstance(stream, str) and stream.lower() == "true":
        raise _BadRequest("streaming is not supported by the crashlab service", "stream")
    assert isinstance(response_format, str)
    return audio, model, response_format


class TranscriptionState:
    """All the service remembers: stored results, active faults, the call log."""

    def __init__(self, call_log: Path) -> None:
        self.call_log = call_log
        self.call_log.parent.mkdir(parents=True, exist_ok=True)
        self.call_log.touch()
        self.generation = 0
        self.results: dict[str, _Entry] = {}
        self.faults: list[FaultRule] = []
        self.fault_epoch = 0
        """Bumped whenever the active faults are cleared or replaced; releases hangs."""
        self.calls: list[dict[str, Any]] = []
        self.latency = LatencyModel()
        self.behaviour = Behaviour()
        self._seq = 0
        self._fault_ids = 0

    # -- admin -------------------------------------------------------------

    def reset(self) -> None:
        """Forget results, faults and calls; truncate the call log."""
        self.generation += 1
        for entry in self.results.values():
            entry.done.set()  # waiters see the new generation and give up
        self.results = {}
        self.clear_faults()
        self.latency = LatencyModel()
        self.behaviour = Behaviour()
        self.calls = []
        self._seq = 0
        self.call_log.write_bytes(b"")

    def add_fault(self, spec: FaultSpec) -> FaultRule:
        if spec.replace:
            self.clear_faults()
        self._fault_ids += 1
        rule = FaultRule(id=self._fault_ids, status=spec.status, count=spec.count,
                         latency_ms=spec.latency_ms, hang=spec.hang, job_id=spec.job_id,
                         chunk_index=spec.chunk_index)
        self.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        self.faults = []
        self.fault_epoch += 1

    def take_fault(self, job_id: str | None, chunk_index: int | None) -> FaultRule | None:
        """The first active fault for this call; uses up one of its count."""
        for rule in self.faults:
            if rule.matches(job_id, chunk_index):
                rule.fired += 1
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count == 0:
                        self.faults.remove(rule)
                return rule
        return None

    def status_of(self, key: str) -> dict[str, Any]:
        entry = self.results.get(key)
        if entry is None:
            return {"key": key, "status": "unknown"}
        answer: dict[str, Any] = {"key": key, "status": entry.status}
        if entry.status == "completed" and entry.result is not None:
            answer["text"] = entry.result.text
        if entry.status == "failed":
            answer["error"] = entry.error
        return answer

    # -- the call log --------------------------------------------------------

    def finish(self, call: _Call, response: Response, outcome: Outcome,
               text: str | None = None) -> Response:
        """Log ``call`` (unless a reset happened meanwhile) and pass ``response`` on."""
        if call.generation != self.generation:
            return response
        self._seq += 1
        record = {
            "seq": self._seq, "ts": call.ts, "idempotency_key": call.idempotency_key,
            "job_id": call.job_id, "chunk_index": call.chunk_index, "model": call.model,
            "audio_sha256": call.audio_sha256, "status_code": response.status_code,
            "outcome": outcome, "text": text,
            "duration_ms": round((time.monotonic() - call.started) * 1000, 3),
        }
        self.calls.append(record)
        with self.call_log.open("a", encoding="utf-8") as log_file:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
        return response

    # -- serving -------------------------------------------------------------

    async def hold(self, request: Request, generation: int) -> str:
        """Hold a hung call: ``released`` (faults cleared), ``disconnected`` or ``reset``.

        A hang's ``count`` limits how many calls get held, not how long: a
        held call stays held until the faults are cleared or replaced.
        """
        epoch = self.fault_epoch
        while True:
            if self.generation != generation:
                return "reset"
            if self.fault_epoch != epoch:
                return "released"
            if await request.is_disconnected():
                return "disconnected"
            await asyncio.sleep(_HOLD_POLL_SECONDS)

    async def serve(self, call: _Call, audio: bytes, response_format: str,
                    deadline: float) -> Response:
        """Do the work once per idempotency key; answer no earlier than ``deadline``."""
        key = call.idempotency_key if self.behaviour.idempotency_keys == "honoured" else None
        while True:
            entry = self.results.get(key) if key is not None else None
            if entry is not None and entry.status != "failed":
                if entry.audio_sha256 != call.audio_sha256:
                    body = error_body(
                        f"Idempotency-Key {key!r} was already used with different audio",
                        "invalid_request_error", code="idempotency_key_reused")
                    return self.finish(call, JSONResponse(body, status_code=422), "bad_request")
                if entry.status == "in_progress":
                    await entry.done.wait()
                    if call.generation != self.generation:
                        return _fault_response(503)
                    continue
                assert entry.result is not None
                await _sleep_until(deadline)
                return self.finish(call, _render(entry.result, response_format), "repeat",
                                   entry.result.text)
            return await self._work(call, audio, response_format, deadline)

    async def _work(self, call: _Call, audio: bytes, response_format: str,
                    deadline: float) -> Response:
        assert call.audio_sha256 is not None
        entry = _Entry(audio_sha256=call.audio_sha256)
        if call.idempotency_key is not None:
            self.results[call.idempotency_key] = entry
        try:
            try:
                result = await asyncio.to_thread(_transcribe, audio)
            except ValueError as exc:
                entry.status, entry.error = "failed", str(exc)
                await _sleep_until(deadline)
                body = error_body(f"could not decode the audio file: {exc}",
                                  "invalid_request_error", param="file")
                return self.finish(call, JSONResponse(body, status_code=400), "bad_request")
            await _sleep_until(deadline)
            entry.status, entry.result = "completed", result
            return self.finish(call, _render(result, response_format), "new", result.text)
        finally:
            if entry.status == "in_progress":  # cancelled: nothing was answered
                entry.status, entry.error = "failed", "interrupted"
            entry.done.set()


async def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining)


def create_app(call_log: Path) -> FastAPI:
    """The service as an ASGI app; every transcription call is appended to ``call_log``."""
    state = TranscriptionState(call_log)
    app = FastAPI(title="crashlab transcription service", docs_url=None, redoc_url=None)
    app.state.transcription = state

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        call = _Call(
            generation=state.generation, ts=time.time(), started=time.monotonic(),
            idempotency_key=request.headers.get("idempotency-key"),
            job_id=request.headers.get("x-crashlab-job"),
            chunk_index=_optional_int(request.headers.get("x-crashlab-chunk")),
        )
        try:
            audio, call.model, response_format = await _read_form(request)
        except _BadRequest as exc:
            body = error_body(exc.message, "invalid_request_error", param=exc.param)
            return state.finish(call, JSONResponse(body, status_code=400), "bad_request")
        call.audio_sha256 = hashlib.sha256(audio).hexdigest()

        rule = state.take_fault(call.job_id, call.chunk_index)
        if rule is not None and rule.hang:
            held = await state.hold(request, call.generation)
            if held == "disconnected":
                return state.finish(call, Response(status_code=CLIENT_CLOSED), "fault")
            if held == "reset":
                return _fault_response(503)
            rule = None  # cleared: the call goes on as if it had never been faulted
        deadline = (call.started + state.latency.sample_s()
                    + (rule.latency_ms / 1000 if rule is not None else 0.0))
        if rule is not None and rule.status is not None:
            await _sleep_until(deadline)
            return state.finish(call, _fault_response(rule.status), "fault")
        return await state.serve(call, audio, response_format, deadline)

    @app.get("/v1/audio/transcriptions/status/{key:path}")
    async def transcription_status(key: str, request: Request) -> Response:
        # a status query is a request to the service too: it is logged (never
        # billable) so a harness can see a worker asking about finished work
        job_id, _, chunk = key.rpartition(":")
        call = _Call(state.generation, time.time(), time.monotonic(), key, job_id or None,
                     int(chunk) if chunk.isdigit() else None)
        if not state.behaviour.status_endpoint:
            body = error_body(f"Invalid URL (GET /v1/audio/transcriptions/status/{key})",
                              "invalid_request_error")
            return state.finish(call, JSONResponse(body, status_code=404), "status")
        answer = state.status_of(key)
        state.finish(call, Response(status_code=200), "status", answer.get("text"))
        return JSONResponse(answer)

    @app.get("/_admin/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/_admin/faults")
    async def list_faults() -> list[dict[str, Any]]:
        return [rule.as_dict() for rule in state.faults]

    @app.post("/_admin/faults")
    async def add_fault(spec: FaultSpec) -> dict[str, Any]:
        return state.add_fault(spec).as_dict()

    @app.delete("/_admin/faults")
    async def clear_faults() -> dict[str, bool]:
        state.clear_faults()
        return {"ok": True}

    @app.get("/_admin/latency")
    async def get_latency() -> dict[str, Any]:
        return state.latency.as_dict()

    @app.post("/_admin/latency")
    async def set_latency(request: Request) -> Response:
        try:
            state.latency = LatencyModel.from_dict(await request.json())
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse(error_body(str(exc), "invalid_request_error"), status_code=422)
        return JSONResponse(state.latency.as_dict())

    @app.get("/_admin/behaviour")
    async def get_behaviour() -> dict[str, Any]:
        return state.behaviour.model_dump()

    @app.post("/_admin/behaviour")
    async def set_behaviour(behaviour: Behaviour) -> dict[str, Any]:
        state.behaviour = behaviour
        return behaviour.model_dump()

    @app.get("/_admin/calls")
    async def calls() -> list[dict[str, Any]]:
        return state.calls

    @app.post("/_admin/reset")
    async def reset() -> dict[str, bool]:
        state.reset()
        return {"ok": True}

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m harness.services.transcription",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--call-log", type=Path, required=True,
                        help="JSONL file that gets one line per transcription call")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.call_log), host=args.host, port=args.port, log_level="info",
                timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
