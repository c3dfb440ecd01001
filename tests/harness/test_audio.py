"""The workload audio: written by crashlab, cut by the real ffmpeg, decoded back to words."""

from __future__ import annotations

import math
import struct
import subprocess
import wave
from pathlib import Path

import imageio_ffmpeg
import pytest

from harness.audio import (
    SAMPLE_RATE,
    SEGMENT_SECONDS,
    VOCABULARY,
    decode_wav,
    expected_transcript,
    frequency_of,
    wav_bytes,
    words_for,
    write_wav,
)

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *args], check=True, timeout=30)


def cut_into_chunks(src: Path, folder: Path, chunk_seconds: float, total_seconds: float
                    ) -> list[Path]:
    """Cut ``src`` the way the reference worker does: one ``-ss``/``-t`` ffmpeg run per chunk."""
    chunks: list[Path] = []
    index = 0
    while index * chunk_seconds < total_seconds:
        chunk = folder / f"chunk-{index:03d}.wav"
        ffmpeg("-ss", str(index * chunk_seconds), "-t", str(chunk_seconds), "-i", str(src),
               "-c:a", "pcm_s16le", str(chunk))
        chunks.append(chunk)
        index += 1
    return chunks


def test_vocabulary_words_are_distinct_and_their_tones_fit_below_nyquist() -> None:
    assert 24 <= len(VOCABULARY) <= 32
    assert len(set(VOCABULARY)) == len(VOCABULARY)
    frequencies = [frequency_of(word) for word in VOCABULARY]
    assert min(b - a for a, b in zip(frequencies, frequencies[1:], strict=False)) >= 100
    assert max(frequencies) < 3800


def test_words_for_is_deterministic_per_seed() -> None:
    words = words_for(42, 50)
    assert words == words_for(42, 50)
    assert words != words_for(43, 50)
    assert len(words) == 50
    assert set(words) <= set(VOCABULARY)
    assert words_for(42, 0) == []


def test_expected_transcript_joins_words_with_single_spaces() -> None:
    assert expected_transcript(["alfa", "bravo", "zulu"]) == "alfa bravo zulu"
    assert expected_transcript([]) == ""


def test_written_file_is_pcm_s16le_mono_8khz_half_second_per_word(tmp_path: Path) -> None:
    path = tmp_path / "workload.wav"
    write_wav(path, words_for(1, 7))
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == SAMPLE_RATE == 8000
        assert wav.getnframes() == 7 * SEGMENT_SECONDS * SAMPLE_RATE


def test_decoding_the_whole_file_gives_back_every_word(tmp_path: Path) -> None:
    words = list(VOCABULARY) + words_for(5, 20)
    path = tmp_path / "workload.wav"
    write_wav(path, words)
    assert decode_wav(path.read_bytes()) == words


@pytest.mark.parametrize("n_segments", [12, 13], ids=["6.0s", "6.5s"])
@pytest.mark.parametrize("chunk_seconds", [1.0, 1.5, 2.0])
def test_ffmpeg_chunks_decoded_in_order_give_the_expected_transcript(
    tmp_path: Path, chunk_seconds: float, n_segments: int
) -> None:
    words = words_for(1000 + n_segments, n_segments)
    src = tmp_path / "workload.wav"
    write_wav(src, words)
    chunks = cut_into_chunks(src, tmp_path, chunk_seconds, n_segments * SEGMENT_SECONDS)

    texts = [" ".join(decode_wav(chunk.read_bytes())) for chunk in chunks]

    assert len(chunks) == math.ceil(n_segments * SEGMENT_SECONDS / chunk_seconds)
    assert " ".join(texts) == expected_transcript(words)


def test_ffmpeg_segment_muxer_chunks_also_decode_in_order(tmp_path: Path) -> None:
    words = words_for(77, 11)
    src = tmp_path / "workload.wav"
    write_wav(src, words)
    ffmpeg("-i", str(src), "-f", "segment", "-segment_time", "1.5", "-c:a", "pcm_s16le",
           str(tmp_path / "seg-%03d.wav"))
    chunks = sorted(tmp_path.glob("seg-*.wav"))
    assert len(chunks) == 4
    assert " ".join(" ".join(decode_wav(c.read_bytes())) for c in chunks) == " ".join(words)


def test_decoding_skips_list_and_other_chunks_before_data() -> None:
    plain = wav_bytes(["kilo", "lima", "mike"])
    list_chunk = b"LIST" + struct.pack("<I", 13) + b"INFOISFTabcde" + b"\x00"  # odd size, padded
    fmt_end = 12 + 8 + 16
    with_list = plain[:fmt_end] + list_chunk + plain[fmt_end:]
    with_list = b"RIFF" + struct.pack("<I", len(with_list) - 8) + with_list[8:]
    assert decode_wav(with_list) == ["kilo", "lima", "mike"]


def test_decoding_reads_resampled_stereo_and_unsigned_8bit_files(tmp_path: Path) -> None:
    words = words_for(9, 6)
    src = tmp_path / "workload.wav"
    write_wav(src, words)
    ffmpeg("-i", str(src), "-ar", "16000", "-ac", "2", str(tmp_path / "stereo16k.wav"))
    ffmpeg("-i", str(src), "-c:a", "pcm_u8", str(tmp_path / "u8.wav"))
    assert decode_wav((tmp_path / "stereo16k.wav").read_bytes()) == words
    assert decode_wav((tmp_path / "u8.wav").read_bytes()) == words


def test_trailing_window_shorter_than_half_a_segment_is_ignored() -> None:
    words = ["alfa", "bravo"]
    whole = wav_bytes(words + ["zulu"])
    header = len(whole) - 3 * 4000 * 2
    segment = 4000 * 2

    def truncated(n_bytes: int) -> bytes:
        data = whole[header:header + n_bytes]
        return (b"RIFF" + struct.pack("<I", 36 + len(data)) + whole[8:header - 4]
                + struct.pack("<I", len(data)) + data)

    assert decode_wav(truncated(2 * segment + 1800 * 2)) == words  # 0.225 s tail: ignored
    assert decode_wav(truncated(2 * segment + 2200 * 2)) == words + ["zulu"]  # 0.275 s: a word


def test_a_cut_a_few_milliseconds_off_the_segment_grid_still_decodes(tmp_path: Path) -> None:
    words = words_for(3, 8)
    src = tmp_path / "workload.wav"
    write_wav(src, words)
    ffmpeg("-ss", "0.02", "-i", str(src), "-c:a", "pcm_s16le", str(tmp_path / "shifted.wav"))
    assert decode_wav((tmp_path / "shifted.wav").read_bytes()) == words


@pytest.mark.parametrize(
    "data",
    [b"", b"not audio at all", b"RIFF\x00\x00\x00\x00WAVE", b"ID3\x04\x00" + b"\x00" * 100],
    ids=["empty", "text", "riff-without-chunks", "mp3-tag"],
)
def test_bytes_that_are_not_a_pcm_wav_raise_a_clear_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a (PCM )?WAV file"):
        decode_wav(data)


def test_float_wav_is_rejected_as_not_integer_pcm(tmp_path: Path) -> None:
    src = tmp_path / "workload.wav"
    write_wav(src, ["alfa"])
    ffmpeg("-i", str(src), "-c:a", "pcm_f32le", str(tmp_path / "float.wav"))
    with pytest.raises(ValueError, match="only integer PCM"):
        decode_wav((tmp_path / "float.wav").read_bytes())
