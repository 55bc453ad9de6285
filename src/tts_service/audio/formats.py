"""The audio formats the service speaks, their media types and sample rates.

| format | bytes | sample rate |
| --- | --- | --- |
| mp3 | MPEG-1/2 layer III, 64 kbit/s CBR (LAME) | the voice's |
| opus | Opus in Ogg (RFC 7845), 32 kbit/s | 24 kHz (Opus takes 8/12/16/24/48 kHz; others are resampled) |
| aac | AAC-LC in ADTS frames, 64 kbit/s | the voice's |
| flac | FLAC, 16-bit | the voice's |
| wav | RIFF/WAVE, 16-bit PCM | the voice's, or `sample_rate` |
| pcm | raw 16-bit little-endian mono | the caller's default (24 kHz on /v1, as OpenAI), or `sample_rate` |
| mulaw, alaw | raw G.711, one byte per sample | 8 kHz (telephony: Twilio, Asterisk) |
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from tts_service.errors import ValidationFailed

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm", "mulaw", "alaw"]
FORMATS: Final[tuple[AudioFormat, ...]] = get_args(AudioFormat)
OPENAI_FORMATS: Final[tuple[AudioFormat, ...]] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
"""What OpenAI's `response_format` takes; `mulaw` and `alaw` are ours."""
WEBSOCKET_FORMATS: Final[tuple[AudioFormat, ...]] = ("pcm", "mp3", "opus", "mulaw", "alaw")
"""Formats a WebSocket stream can carry: each frame decodes as it arrives, with no header to patch at the end."""
SAMPLE_RATES: Final = (8000, 16000, 22050, 24000, 44100, 48000)
"""Rates `sample_rate` may ask of pcm and wav."""
TELEPHONY_RATE: Final = 8000
MP3_KBPS: Final = 64
OPENAI_PCM_RATE: Final = 24000

# The rates each codec takes as they are; any other voice rate is resampled to 24 kHz, which all three take.
_MPEG_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
_CODEC_RATES: Final[dict[AudioFormat, frozenset[int]]] = {
    "mp3": _MPEG_RATES,
    "aac": _MPEG_RATES | {64000, 88200, 96000},
    "opus": frozenset({8000, 12000, 16000, 24000, 48000}),
}
_FALLBACK_RATE: Final = 24000
_OPUS_RATE: Final = 24000
"""Opus codes at 48 kHz inside whatever it is given; 24 kHz input halves the resampling and keeps all of a voice's
band (Piper voices stop at 11 kHz)."""

_MEDIA_TYPES: Final[dict[AudioFormat, str]] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "mulaw": "audio/PCMU",
    "alaw": "audio/PCMA",
}

AUDIO_MEDIA_TYPES: Final = tuple(dict.fromkeys(t.split(";")[0] for t in _MEDIA_TYPES.values()))
"""The media types (without parameters) of the audio answers, for the OpenAPI schema."""

# Accept header media types (lower case, no parameters) -> format; "json" for the JSON answer of POST /tts.
_ACCEPT: Final[dict[str, AudioFormat | Literal["json"]]] = {
    "application/json": "json",
    "application/*": "json",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/vnd.wave": "wav",
    "audio/*": "wav",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/ogg": "opus",
    "audio/opus": "opus",
    "audio/aac": "aac",
    "audio/x-aac": "aac",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/pcm": "pcm",
    "audio/l16": "pcm",
    "audio/raw": "pcm",
    "audio/pcmu": "mulaw",
    "audio/basic": "mulaw",
    "audio/x-mulaw": "mulaw",
    "audio/mulaw": "mulaw",
    "audio/pcma": "alaw",
    "audio/x-alaw": "alaw",
    "audio/alaw": "alaw",
}


def media_type(fmt: AudioFormat, sample_rate: int) -> str:
    """The Content-Type of `fmt`; headerless formats carry their rate as a parameter."""
    base = _MEDIA_TYPES[fmt]
    if fmt == "pcm":
        return f"{base};rate={sample_rate};channels=1;bits=16"
    if fmt in ("mulaw", "alaw"):
        return f"{base};rate={sample_rate}"
    return base


def min_bytes_per_second(fmt: AudioFormat, sample_rate: int) -> int:
    """Bytes a second of `fmt` takes at least: exact for PCM and G.711, the constant bit rate of mp3; 0 for the
    variable-rate codecs (opus, aac, flac), whose silence costs next to nothing."""
    if fmt in ("wav", "pcm"):
        return 2 * sample_rate
    if fmt in ("mulaw", "alaw"):
        return sample_rate
    if fmt == "mp3":
        return MP3_KBPS * 1000 // 8
    return 0


def format_from_accept(accept: str | None) -> AudioFormat | Literal["json"] | None:
    """The first audio format (or "json") named in an Accept header, in the client's order; None if none is."""
    for part in (accept or "").split(","):
        found = _ACCEPT.get(part.split(";")[0].strip().lower())
        if found is not None:
            return found
    return None


def output_rate(fmt: AudioFormat, source_rate: int, sample_rate: int | None = None, pcm_rate: int | None = None) -> int:
    """The rate `fmt` is encoded at for a voice of `source_rate`; ValidationFailed for a rate it cannot take.

    `sample_rate` is the caller's request (pcm, wav, mulaw, alaw only); `pcm_rate` the route's default for pcm.
    """
    if sample_rate is not None:
        if fmt in ("mulaw", "alaw"):
            if sample_rate != TELEPHONY_RATE:
                raise ValidationFailed(
                    f"{fmt} is 8000 Hz audio; sample_rate {sample_rate} is not", fields=["sample_rate"]
                )
            return sample_rate
        if fmt not in ("pcm", "wav"):
            raise ValidationFailed(
                f"sample_rate applies to pcm, wav, mulaw and alaw; {fmt} has its own rate", fields=["sample_rate"]
            )
        if sample_rate not in SAMPLE_RATES:
            rates = ", ".join(str(r) for r in SAMPLE_RATES)
            raise ValidationFailed(f"sample_rate must be one of {rates}; got {sample_rate}", fields=["sample_rate"])
        return sample_rate
    if fmt in ("mulaw", "alaw"):
        return TELEPHONY_RATE
    if fmt == "pcm" and pcm_rate is not None:
        return pcm_rate
    if fmt == "opus":
        return source_rate if source_rate in _CODEC_RATES["opus"] else _OPUS_RATE
    allowed = _CODEC_RATES.get(fmt)
    if allowed is None or source_rate in allowed:
        return source_rate
    return _FALLBACK_RATE
