"""Per-request synthesis options, shared by `/tts`, the streaming transports and chat replies."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tts_service.engine.text import find_unspeakable

SPEED_MIN = 0.25
SPEED_MAX = 4.0


def _speakable(text: str) -> str:
    at = find_unspeakable(text)
    if at is not None:
        raise ValueError(
            f"character U+{ord(text[at]):04X} at position {at} cannot be spoken: control characters other than "
            "whitespace, and unpaired surrogates, are refused"
        )
    return text


SpeechText = Annotated[str, AfterValidator(_speakable)]
"""Text from a client that will be spoken or stored: refused (422) when it holds characters no voice can take."""


class SpeechOptions(BaseModel):
    """How to speak: voice selection and Piper's synthesis knobs. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    voice: str | None = Field(None, min_length=1, max_length=200, description="Voice id from GET /voices/detail.")
    language: str | None = Field(
        None, min_length=2, max_length=16, description="Language code (en_US, en); picks that language's default voice."
    )
    speaker: int | str | None = Field(
        None, description="Speaker id or name, for multi-speaker voices.", union_mode="left_to_right"
    )
    speed: float | None = Field(None, ge=SPEED_MIN, le=SPEED_MAX, description="1.0 is the voice's own pace.")
    noise_scale: float | None = Field(None, ge=0.0, le=2.0, description="Generator noise (voice default 0.667).")
    noise_w: float | None = Field(None, ge=0.0, le=2.0, description="Phoneme duration noise (voice default 0.8).")
    volume: float = Field(1.0, ge=0.0, le=4.0, description="Gain after peak normalisation; clipped to full scale.")
    sentence_silence: float = Field(0.0, ge=0.0, le=5.0, description="Seconds of silence between sentences.")
    loudness: float | None = Field(
        None,
        ge=-40.0,
        le=-5.0,
        description="Target loudness in LUFS (ITU-R BS.1770), e.g. -16 for podcasts, -23 for broadcast; true peaks "
        "held under -1 dBTP. Unset: peak-normalised as Piper does. Streams take one gain from the voice's "
        "measured loudness.",
    )

    def options(self) -> SpeechOptions:
        """Only the speech options, of a message or body that carries more besides."""
        return SpeechOptions.model_validate(self.model_dump(include=set(SpeechOptions.model_fields)))
