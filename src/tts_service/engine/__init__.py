"""The Piper engine: voice map, voice cache, text cutting, synthesis and audio encoding."""

from tts_service.engine.options import SpeechOptions
from tts_service.engine.speech import Speech, SpeechChunk, SpeechRequest
from tts_service.engine.synth import Engine, get_engine

__all__ = ["Engine", "Speech", "SpeechChunk", "SpeechOptions", "SpeechRequest", "get_engine"]
