"""FastAPI dependencies as named types."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from tts_service.config import Settings, get_settings
from tts_service.engine import Engine, get_engine

EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
