"""The workload's audio: a WAV whose every half second is a tone that spells a word.

A workload file is PCM s16le, mono, ``SAMPLE_RATE`` Hz, made of consecutive
segments of ``SEGMENT_SECONDS``. Each segment is a pure sine tone; its
frequency (``300 Hz + 100 Hz * index``) names one word of ``VOCABULARY``.

The fake transcription service decodes audio with ``decode_wav``: it cuts the
file into ``SEGMENT_SECONDS`` windows from its start and maps each window's
frequency to the nearest vocabulary word. Because every window is decoded on
its own, a worker that cuts the file into chunks whose length is a multiple of
``SEGMENT_SECONDS`` and joins the chunk texts in order gets exactly
``expected_transcript(words)``; a chunk lost, repeated or reordered shows up
as a wrong transcript.

Pure Python (``struct``/``array``), no numpy.
"""

from __future__ import annotations

import array
import math
import random
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

VOCABULARY: tuple[str, ...] = (
    "alfa", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa",
    "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
    "yankee", "zulu",
)
"""The words a workload file can contain, in frequency order."""

SAMPLE_RATE = 8000
"""Samples per second of the files ``write_wav`` produces."""

SEGMENT_SECONDS = 0.5
"""Length of the tone that carries one word."""

BASE_HZ = 300.0
STEP_HZ = 100.0
AMPLITUDE = 0.6
"""Peak level as a fraction of full scale (leaves headroom for resampling)."""

_FORMAT_PCM = 1
_FORMAT_EXTENSIBLE = 0xFFFE
_TRIM = 0.1
"""Fraction of each window ignored at both ends when estimating its frequency,
so a chunk boundary a few milliseconds off the segment grid changes nothing."""


def frequency_of(word: str) -> float:
    """The tone frequency (Hz) that encodes ``word``; ``ValueError`` for a non-vocabulary word."""
    try:
        return BASE_HZ + STEP_HZ * VOCABULARY.index(word)
    except ValueError:
        raise ValueError(f"{word!r} is not in the workload vocabulary") from None


def word_for_frequency(hz: float) -> str:
    """The vocabulary word whose tone is nearest to ``hz``."""
    index = round((hz - BASE_HZ) / STEP_HZ)
    return VOCABULARY[min(max(index, 0), len(VOCABULARY) - 1)]


def words_for(seed: int, n_segments: int) -> list[str]:
    """``n_segments`` vocabulary words drawn from ``random.Random(seed)``; same seed, same words."""
    if n_segments < 0:
        raise ValueError(f"n_segments must be >= 0, got {n_segments}")
    rng = random.Random(seed)
    return [rng.choice(VOCABULARY) for _ in range(n_segments)]


def expected_transcript(words: Sequence[str]) -> str:
    """The transcript a correct worker produces for a file made of ``words``."""
    return " ".join(words)


def segment_samples(sample_rate: int = SAMPLE_RATE) -> int:
    """Samples in one segment at ``sample_rate``."""
    return round(sample_rate * SEGMENT_SECONDS)


def encode_pcm(words: Sequence[str]) -> bytes:
    """The raw PCM s16le mono samples (no header) for ``words``."""
    n = segment_samples()
    samples = array.array("h")
    peak = AMPLITUDE * 32767
    for word in words:
        step = 2 * math.pi * frequency_of(word) / SAMPLE_RATE
        # A quarter-period phase offset keeps samples off exact zero, so every
        # zero crossing is a clean sign change.
        samples.extend(round(peak * math.sin(step * (i + 0.25))) for i in range(n))
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()


def wav_bytes(words: Sequence[str]) -> bytes:
    """A complete PCM WAV file (s16le, mono, ``SAMPLE_RATE``) for ``words``."""
    data = encode_pcm(words)
    fmt = struct.pack("<HHIIHH", _FORMAT_PCM, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    if len(data) % 2:
        body += b"\x00"
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_wav(path: Path, words: Sequence[str]) -> None:
    """Write the workload file for ``words`` to ``path`` (PCM s16le, mono, 8000 Hz)."""
    path.write_bytes(wav_bytes(words))


class _Pcm:
    """The decoded essentials of a PCM WAV file."""

    def __init__(self, channels: int, sample_rate: int, sample_width: int, data: bytes) -> None:
        self.channels = channels
        self.sample_rate = sample_rate
        self.sample_width = sample_width
        self.data = data


def _parse_wav(data: bytes) -> _Pcm:
    """Walk the RIFF chunks (skipping LIST and friends) to ``fmt `` and ``data``."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file: missing the RIFF/WAVE header")
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos:pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body_start = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body_start + 16 > len(data):
                raise ValueError("not a PCM WAV file: truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body_start)
            if tag == _FORMAT_EXTENSIBLE and size >= 40 and body_start + 26 <= len(data):
                # The sub-format GUID starts with the real format tag.
                (tag,) = struct.unpack_from("<H", data, body_start + 24)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise ValueError("not a PCM WAV file: data chunk before fmt chunk")
            tag, channels, rate, bits = fmt
            if tag != _FORMAT_PCM:
                raise ValueError(f"not a PCM WAV file: format tag {tag:#x} (only integer PCM)")
            if bits not in (8, 16, 32) or channels < 1 or rate < 1:
                raise ValueError(
                    f"unsupported PCM WAV: {bits}-bit, {channels} channel(s), {rate} Hz"
                )
            # Writers that stream (size 0 or 0xFFFFFFFF) leave the size unknown:
            # take everything that follows.
            end = len(data) if size in (0, 0xFFFFFFFF) else min(body_start + size, len(data))
            return _Pcm(channels, rate, bits // 8, data[body_start:end])
        pos = body_start + size + (size & 1)
    if fmt is None:
        raise ValueError("not a PCM WAV file: no fmt chunk")
    raise ValueError("not a PCM WAV file: no data chunk")


def _first_channel(pcm: _Pcm) -> array.array[int]:
    width, channels = pcm.sample_width, pcm.channels
    usable = len(pcm.data) - len(pcm.data) % (width * channels)
    if width == 1:  # 8-bit WAV is unsigned; only the sign of (x - 128) matters
        samples = array.array("h", (b - 128 for b in pcm.data[:usable]))
    else:
        samples = array.array("h" if width == 2 else "i", pcm.data[:usable])
        if sys.byteorder != "little":
            samples.byteswap()
    if channels > 1:
        samples = samples[::channels]
    return samples


def _zero_crossings(samples: Sequence[int]) -> int:
    crossings = 0
    previous_negative = samples[0] < 0 if samples else False
    for value in samples:
        negative = value < 0
        if negative != previous_negative:
            crossings += 1
            previous_negative = negative
    return crossings


def _estimate_hz(window: Sequence[int], sample_rate: int) -> float:
    trim = int(len(window) * _TRIM)
    core = window[trim:len(window) - trim] if trim else window
    if len(core) < 2:
        return 0.0
    seconds = (len(core) - 1) / sample_rate
    return _zero_crossings(core) / (2 * seconds)


def decode_wav(data: bytes) -> list[str]:
    """The words spelled by a PCM WAV file (any rate, 8/16/32-bit, first channel used).

    The file is cut into ``SEGMENT_SECONDS`` windows from its start; each
    window's frequency (from its zero-crossing rate) maps to the nearest
    vocabulary word. A trailing window shorter than half a segment is ignored.
    Raises ``ValueError`` when ``data`` is not a PCM WAV file.
    """
    pcm = _parse_wav(data)
    samples = _first_channel(pcm)
    window = segment_samples(pcm.sample_rate)
    words: list[str] = []
    for start in range(0, len(samples), window):
        chunk = samples[start:start + window]
        if len(chunk) * 2 < window:
            break
        words.append(word_for_frequency(_estimate_hz(chunk, pcm.sample_rate)))
    return words


def audio_seconds(data: bytes) -> float:
    """Duration in seconds of a PCM WAV file; ``ValueError`` if it is not one."""
    pcm = _parse_wav(data)
    frames = len(pcm.data) // (pcm.sample_width * pcm.channels)
    return frames / pcm.sample_rate
