"""Audio formats beyond the engine's 16-bit PCM: the format table, resampling and incremental encoders.

`formats` says what each format is (media type, sample rate, where it can stream); `encode` turns PCM into
those bytes, whole or chunk by chunk as the engine makes it. Codecs come from wheels (PyAV's FFmpeg build,
LAME through lameenc, libsoxr): no system ffmpeg at run time.
"""

from tts_service.audio.encode import Encoder, encode_whole, new_encoder
from tts_service.audio.formats import (
    AUDIO_MEDIA_TYPES,
    FORMATS,
    OPENAI_FORMATS,
    SAMPLE_RATES,
    WEBSOCKET_FORMATS,
    AudioFormat,
    format_from_accept,
    media_type,
    output_rate,
)

__all__ = [
    "AUDIO_MEDIA_TYPES",
    "FORMATS",
    "OPENAI_FORMATS",
    "SAMPLE_RATES",
    "WEBSOCKET_FORMATS",
    "AudioFormat",
    "Encoder",
    "encode_whole",
    "format_from_accept",
    "media_type",
    "new_encoder",
    "output_rate",
]
