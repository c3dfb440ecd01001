"""Chunk transcription through the ``openai`` SDK, with backoff and idempotency keys.

The SDK's own retries are off (``max_retries=0``): this module owns the
policy, so every attempt is visible in the logs and bounded by
``CRASHLAB_TRANSCRIBE_ATTEMPTS``. Each chunk carries an idempotency key
``<job id>:<chunk index>``, stable across crashes and re-cuts, so a service
that honours it does the billable work once.
"""

from __future__ import annotations

import asyncio
import logging
import random

import openai

from system_under_test.config import Settings

log = logging.getLogger(__name__)

_TRANSIENT = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
              openai.APIConnectionError)


class TranscriptionError(Exception):
    """A chunk could not be transcribed; the message says which and why."""


def idempotency_key(job_id: str, index: int) -> str:
    return f"{job_id}:{index}"


class Transcriber:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # a plain-http endpoint has no certificate to verify, and loading the CA bundle
        # costs ~40 ms of CPU at every worker start
        plain_http = settings.openai_base_url.startswith("http://")
        self.client = openai.AsyncOpenAI(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            max_retries=0,
            timeout=settings.request_timeout_s,
            http_client=openai.DefaultAsyncHttpxClient(verify=False) if plain_http else None,
        )
        self._jitter = random.Random()

    async def close(self) -> None:
        await self.client.close()

    async def completed_text(self, job_id: str, index: int) -> str | None:
        """The service's stored result for this chunk's key, if it already did the work.

        Asked before a worker sends a chunk of a job someone held before (the
        crash or the stop may have fallen after the service answered and before
        the commit): a service that ignores the key would bill it again. Any
        error means "don't know", and the chunk is sent normally.
        """
        key = idempotency_key(job_id, index)
        try:
            status = await self.client.get(f"/audio/transcriptions/status/{key}",
                                           cast_to=object)
        except (openai.APIError, ValueError) as exc:
            log.info("status of %s unknown (%s); sending the chunk", key, type(exc).__name__)
            return None
        if isinstance(status, dict) and status.get("status") == "completed":
            text = status.get("text")
            return text if isinstance(text, str) else None
        return None

    async def transcribe(self, audio: bytes, filename: str, job_id: str, index: int) -> str:
        headers = {
            "Idempotency-Key": idempotency_key(job_id, index),
            "X-Crashlab-Job": job_id,
            "X-Crashlab-Chunk": str(index),
        }
        attempts = self.settings.transcribe_attempts
        for attempt in range(1, attempts + 1):
            try:
                result = await self.client.audio.transcriptions.create(
                    model=self.settings.transcription_model,
                    file=(filename, audio, "audio/wav"),
                    extra_headers=headers,
                )
                return result.text
            except openai.BadRequestError as exc:
                raise TranscriptionError(f"chunk {index} was refused: {exc.message}") from exc
            except _TRANSIENT as exc:
                if attempt == attempts:
                    raise TranscriptionError(
                        f"chunk {index} failed after {attempts} attempts: {type(exc).__name__}"
                    ) from exc
                delay = min(5.0, 0.05 * 2 ** (attempt - 1)) * (0.5 + self._jitter.random())
                log.warning("chunk %d of job %s: %s, retrying in %.2fs (attempt %d/%d)",
                            index, job_id, type(exc).__name__, delay, attempt, attempts)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")
