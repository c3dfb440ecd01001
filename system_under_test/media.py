"""Media probing and chunking with the ffmpeg binary from the imageio-ffmpeg wheel.

Chunks are cut with output-side seeking (``-ss``/``-t`` after ``-i``), which
decodes from the start and is sample-accurate, and written bit-exact (no
encoder tag, no metadata), so cutting the same original again gives files
with the same checksums: recovery can tell a corrupt chunk from a good one.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

CHUNK_SAMPLE_RATE = 8000
_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


class MediaError(Exception):
    """The file is not usable audio; the message says why, for the API's 4xx."""


@dataclass(frozen=True)
class Probe:
    duration: float
    audio_codec: str


def ffmpeg_exe() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


async def _run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_exe(), "-hide_banner", "-nostdin", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await proc.communicate()
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return proc.returncode or 0, err.decode(errors="replace")


async def probe(path: Path) -> Probe:
    """Duration and codec of the first audio stream; ``MediaError`` if there is none."""
    _, err = await _run("-i", str(path))
    audio = re.search(r"Stream #\S+.*?: Audio: ([^,\s]+)", err)
    if audio is None:
        raise MediaError("the file has no audio stream (is it audio or video media?)")
    match = _DURATION.search(err)
    if match is None:
        raise MediaError("could not read the media's duration")
    hours, minutes, seconds = match.groups()
    duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if duration <= 0:
        raise MediaError("the audio is empty (duration 0)")
    return Probe(duration, audio.group(1))


def chunk_bounds(duration: float, chunk_seconds: float) -> list[tuple[float, float]]:
    """(start, length) of each chunk; the last one may be shorter."""
    count = max(1, math.ceil(duration / chunk_seconds - 1e-6))
    bounds = []
    for index in range(count):
        start = index * chunk_seconds
        bounds.append((round(start, 6), round(min(chunk_seconds, duration - start), 6)))
    return bounds


def chunk_path(chunk_dir: Path, index: int) -> Path:
    return chunk_dir / f"chunk-{index:04d}.wav"


async def cut(source: Path, chunk_dir: Path,
              pieces: list[tuple[int, float, float]]) -> dict[int, str]:
    """Write each (index, start, length) piece of ``source`` into ``chunk_dir``.

    One ffmpeg run writes every piece; each file is written under a temporary
    name and renamed, so a crash never leaves a half-written chunk under its
    real name. Returns each piece's checksum, taken before the rename, so
    damage done to the file after it is in place can always be detected.
    """
    if not source.is_file():
        raise FileNotFoundError(f"original media is missing: {source}")
    chunk_dir.mkdir(parents=True, exist_ok=True)
    args = ["-y", "-i", str(source)]
    for index, start, length in pieces:
        tmp = chunk_path(chunk_dir, index).with_suffix(".part.wav")
        args += ["-ss", f"{start:.6f}", "-t", f"{length:.6f}", "-map", "0:a:0",
                 "-ac", "1", "-ar", str(CHUNK_SAMPLE_RATE), "-c:a", "pcm_s16le",
                 "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
                 str(tmp)]
    code, err = await _run(*args)
    if code != 0:
        if not source.is_file():  # it vanished while ffmpeg was reading it
            raise FileNotFoundError(f"original media is missing: {source}")
        raise MediaError(f"ffmpeg failed to cut chunks: {err.strip().splitlines()[-1:]}")
    checksums = {}
    for index, _, _ in pieces:
        final = chunk_path(chunk_dir, index)
        partial = final.with_suffix(".part.wav")
        checksums[index] = checksum(partial)
        os.replace(partial, final)
    return checksums


def checksum(path: Path) -> str:
    return digest(path.read_bytes())


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
