"""How long speech will at least last, known from the request alone, before anything is synthesized.

Measured on the registered voices (joe-medium, several noise settings): ordinary English speaks 13 to 17 letters
and digits a second, numbers, symbols and non-Latin scripts far fewer (they expand into words), a run of one
repeated letter at most 28. So `MAX_ALNUM_PER_SECOND` letters or digits a second is a floor on the duration:
what is refused on it could not have fitted, whatever the text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tts_service.engine.text import split_sentences

if TYPE_CHECKING:
    from tts_service.engine.speech import SpeechRequest

MAX_ALNUM_PER_SECOND: Final = 30.0
"""Letters and digits a second no voice outpaces at its own speed (speed 1)."""


def min_audio_seconds(req: SpeechRequest) -> float:
    """A lower bound of the speech's duration: its letters at the fastest pace, stretched by the speed, plus the
    silence between its sentences."""
    stretch = 1.0
    if req.length_scale is not None:  # the voice's config is read only when a speed needs it
        base = float(req.voice.config_dict.get("inference", {}).get("length_scale", 1.0)) or 1.0
        stretch = req.length_scale / base
    spoken = sum(ch.isalnum() for ch in req.text) / MAX_ALNUM_PER_SECOND * stretch
    gaps = max(0, len(split_sentences(req.text)) - 1) if req.sentence_silence > 0 else 0
    return spoken + gaps * req.sentence_silence
