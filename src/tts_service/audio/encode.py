"""Incremental encoders: 16-bit PCM in as the engine makes it, encoded bytes out as soon as the codec has them.

An `Encoder` keeps its codec's state (and a resampler's) across calls, so a stream is encoded chunk by chunk
while later chunks are still being synthesized, and the bytes of each chunk can be sent at once. In `whole`
mode the bytes come at `finish()` instead, with headers that need the length (WAV, FLAC) filled in.

PyAV and lameenc are imported when an encoder of theirs is first made: routes answering WAV or PCM, and the
functions that never encode, do not pay for loading FFmpeg.
"""

from __future__ import annotations

import io
import time
from typing import Final, Protocol

import numpy as np
import soxr

from tts_service.audio.formats import MP3_KBPS, AudioFormat, media_type, output_rate
from tts_service.engine.audio import Int16Array, wav_header

MP3_QUALITY: Final = 3
"""LAME's -q: 3 costs no more than 5 here (~40 ms for 14 s of speech, bench/bench_encode.py), 2 costs ~2.5x."""
AAC_BIT_RATE: Final = 64_000
OPUS_BIT_RATE: Final = 32_000
OPUS_COMPLEXITY: Final = "5"
"""libopus complexity 0-10 (default 10): 5 encodes ~3x faster; at 32 kbit/s speech stays clean."""
OGG_PAGE_MICROS: Final = "100000"
"""Ogg pages close every 100 ms of audio, so a streamed chunk's bytes leave with it (the default, 1 s, would hold
the first quarter-second chunk back); the page headers cost ~8% of 32 kbit/s."""
RESAMPLE_QUALITY: Final = "HQ"
"""soxr's high quality: 20-bit precision, linear phase, pass band to 91% of Nyquist."""


class _Codec(Protocol):
    def write(self, pcm: Int16Array) -> bytes: ...

    def close(self) -> bytes: ...


class _Raw:
    """Headerless 16-bit little-endian PCM."""

    def write(self, pcm: Int16Array) -> bytes:
        return pcm.astype("<i2", copy=False).tobytes()

    def close(self) -> bytes:
        return b""


class _Wav:
    """RIFF/WAVE: streamed, a header of unknown length first (as ffmpeg and sox write); whole, the exact length."""

    def __init__(self, sample_rate: int, whole: bool) -> None:
        self.sample_rate = sample_rate
        self.whole = whole
        self._started = False
        self._parts: list[bytes] = []

    def write(self, pcm: Int16Array) -> bytes:
        data = pcm.astype("<i2", copy=False).tobytes()
        if self.whole:
            self._parts.append(data)
            return b""
        if not self._started:
            self._started = True
            return wav_header(self.sample_rate, None) + data
        return data

    def close(self) -> bytes:
        if self.whole:
            data = b"".join(self._parts)
            return wav_header(self.sample_rate, len(data)) + data
        return b"" if self._started else wav_header(self.sample_rate, None)


class _Lame:
    """MP3 through LAME (lameenc): constant bit rate, the voice's own rate (every Piper rate is an MPEG rate)."""

    def __init__(self, sample_rate: int) -> None:
        import lameenc  # noqa: PLC0415 loaded with the first mp3 encoder (module docstring)

        self._encoder = lameenc.Encoder()
        self._encoder.set_bit_rate(MP3_KBPS)
        self._encoder.set_in_sample_rate(sample_rate)
        self._encoder.set_channels(1)
        self._encoder.set_quality(MP3_QUALITY)

    def write(self, pcm: Int16Array) -> bytes:
        return bytes(self._encoder.encode(pcm.astype("<i2", copy=False).tobytes()))

    def close(self) -> bytes:
        return bytes(self._encoder.flush())


class _Pipe:
    """A write-only, unseekable file for PyAV: what the muxer wrote since the last `take`."""

    def __init__(self) -> None:
        self._data = bytearray()

    def write(self, data: bytes) -> int:
        self._data += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._data)
        self._data.clear()
        return out


# format -> (muxer, encoder, bit rate, encoder options, muxer options)
_AV_FORMATS: Final[dict[str, tuple[str, str, int, dict[str, str], dict[str, str]]]] = {
    "aac": ("adts", "aac", AAC_BIT_RATE, {"aac_coder": "fast"}, {}),
    "opus": (
        "ogg",
        "libopus",
        OPUS_BIT_RATE,
        {"compression_level": OPUS_COMPLEXITY},
        {"page_duration": OGG_PAGE_MICROS},
    ),
    "flac": ("flac", "flac", 0, {}, {}),
    "mulaw": ("mulaw", "pcm_mulaw", 0, {}, {}),
    "alaw": ("alaw", "pcm_alaw", 0, {}, {}),
}


class _Av:
    """A PyAV (FFmpeg) encoder and muxer writing to memory.

    Streamed, the muxer writes to an unseekable pipe and flushes after every packet, so bytes leave as packets are
    made (FLAC's header then says "length unknown"). Whole, it writes to a seekable buffer and the muxer goes
    back to fill in the header at the end.
    """

    def __init__(self, fmt: AudioFormat, sample_rate: int, whole: bool) -> None:
        import av  # noqa: PLC0415 FFmpeg is loaded with the first encoder that needs it (module docstring)

        muxer, codec, bit_rate, codec_options, muxer_options = _AV_FORMATS[fmt]
        self.sample_rate = sample_rate
        self._file: io.BytesIO | _Pipe = io.BytesIO() if whole else _Pipe()
        options = dict(muxer_options) if whole else {**muxer_options, "flush_packets": "1"}
        self._container = av.open(self._file, "w", format=muxer, options=options)
        stream = self._container.add_stream(codec, rate=sample_rate, options=codec_options)
        assert isinstance(stream, av.audio.AudioStream)
        self._stream = stream
        self._stream.layout = "mono"
        if bit_rate:
            self._stream.bit_rate = bit_rate
        self._frame_type = av.AudioFrame

    def write(self, pcm: Int16Array) -> bytes:
        if pcm.size:
            frame = self._frame_type.from_ndarray(
                np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = self.sample_rate
            # PyAV converts to the codec's sample format and cuts its frame size (AAC 1024, Opus 20 ms) itself.
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._file.take() if isinstance(self._file, _Pipe) else b""

    def close(self) -> bytes:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._file.take() if isinstance(self._file, _Pipe) else self._file.getvalue()


class _Resampler:
    """Streaming sample-rate conversion (libsoxr): chunks join without clicks, as one whole conversion would."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=RESAMPLE_QUALITY)

    def feed(self, pcm: Int16Array) -> Int16Array:
        out: Int16Array = self._stream.resample_chunk(np.ascontiguousarray(pcm, dtype=np.int16), last=False)
        return out

    def flush(self) -> Int16Array:
        out: Int16Array = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        return out


class Encoder:
    """PCM of one voice (at `source_rate`) in, `format` out at `sample_rate`, chunk by chunk."""

    def __init__(self, fmt: AudioFormat, source_rate: int, sample_rate: int, whole: bool = False) -> None:
        self.format: AudioFormat = fmt
        self.source_rate = source_rate
        self.sample_rate = sample_rate
        self.media_type = media_type(fmt, sample_rate)
        self.whole = whole
        self.encode_seconds = 0.0
        """Time spent resampling and encoding so far (bench/bench_encode.py reports it against synthesis)."""
        self.samples_in = 0
        started = time.perf_counter()
        self._resampler = _Resampler(source_rate, sample_rate) if sample_rate != source_rate else None
        self._codec = _make_codec(fmt, sample_rate, whole)
        self.encode_seconds += time.perf_counter() - started

    @property
    def duration_ms(self) -> int:
        """Milliseconds of audio fed so far."""
        return round(1000 * self.samples_in / self.source_rate)

    def encode(self, pcm: Int16Array) -> bytes:
        """Encode the next PCM; returns the bytes ready now (possibly none: codecs work in frames)."""
        started = time.perf_counter()
        self.samples_in += pcm.size
        if self._resampler is not None:
            pcm = self._resampler.feed(pcm)
        out = self._codec.write(pcm)
        self.encode_seconds += time.perf_counter() - started
        return out

    def finish(self) -> bytes:
        """The rest: the resampler's and codec's buffered tail, trailers, or (whole mode) the entire file."""
        started = time.perf_counter()
        out = b""
        if self._resampler is not None:
            out = self._codec.write(self._resampler.flush())
        out += self._codec.close()
        self.encode_seconds += time.perf_counter() - started
        return out


def _make_codec(fmt: AudioFormat, sample_rate: int, whole: bool) -> _Codec:
    if fmt == "pcm":
        return _Raw()
    if fmt == "wav":
        return _Wav(sample_rate, whole)
    if fmt == "mp3":
        return _Lame(sample_rate)
    return _Av(fmt, sample_rate, whole)


def new_encoder(
    fmt: AudioFormat,
    source_rate: int,
    sample_rate: int | None = None,
    *,
    pcm_rate: int | None = None,
    whole: bool = False,
) -> Encoder:
    """An encoder for a voice of `source_rate`; ValidationFailed when `sample_rate` does not suit `fmt`."""
    return Encoder(fmt, source_rate, output_rate(fmt, source_rate, sample_rate, pcm_rate), whole=whole)


def encode_whole(
    pcm: Int16Array, source_rate: int, fmt: AudioFormat, sample_rate: int | None = None, *, pcm_rate: int | None = None
) -> tuple[bytes, Encoder]:
    """A complete file of `fmt` (headers with lengths filled in), and the encoder that made it (rate, timing)."""
    encoder = new_encoder(fmt, source_rate, sample_rate, pcm_rate=pcm_rate, whole=True)
    data = encoder.encode(pcm) + encoder.finish()
    return data, encoder
