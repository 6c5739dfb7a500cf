"""The TTS engine interface, the engine factory and the load-with-fallback policy.

Pure Python (no ROS imports). An engine turns one piece of normalised text into float32 mono
audio blocks at its own ``sample_rate``; the streamer (``stream.py``) trims, joins,
resamples and frames them. ``synthesize`` checks ``stop`` between blocks so an interrupt
ends synthesis at the next block boundary.
"""

from __future__ import annotations

import abc
import logging
import threading
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from wallie_tts.config import EngineSettings

_LOG = logging.getLogger(__name__)
WARM_UP_TEXTS = ('Hello.', 'Hello, I am ready to help you with whatever you need today.')


class EngineError(RuntimeError):
    """An engine cannot be loaded or cannot synthesize; the message says why and the fix."""


class TtsEngine(abc.ABC):
    """A loaded speech synthesizer."""

    name: str = 'engine'

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int:
        """Rate of the audio ``synthesize`` yields (valid after ``load``)."""

    @abc.abstractmethod
    def load(self) -> None:
        """Load the model (may take seconds); raise EngineError with the reason on failure."""

    @abc.abstractmethod
    def synthesize(self, text: str, stop: threading.Event,
                   speed: float = 1.0) -> Iterator[np.ndarray]:
        """Yield float32 mono blocks in [-1, 1] for ``text``; return early when stop is set."""

    def warm_up(self) -> float:
        """Run throw-away syntheses (first runs are slow); return their audio seconds."""
        n = sum(len(b) for text in WARM_UP_TEXTS
                for b in self.synthesize(text, threading.Event()))
        if n == 0:
            raise EngineError(f'{self.name}: warm-up produced no audio')
        return n / self.sample_rate

    def close(self) -> None:
        """Release the model's memory (the engine is unusable afterwards)."""

    def describe(self) -> str:
        """Short human-readable description (engine and voice) for logs and diagnostics."""
        return self.name


def create_engine(settings: EngineSettings, engine: Optional[str] = None) -> TtsEngine:
    """Build (not load) the engine named by ``engine`` or ``settings.engine``."""
    name = engine or settings.engine
    if name == 'piper':
        from wallie_tts.piper_engine import PiperEngine
        return PiperEngine(settings.piper)
    if name == 'espeak':
        from wallie_tts.espeak_engine import EspeakEngine
        return EspeakEngine(settings.espeak)
    if name == 'xtts':
        from wallie_tts.xtts_engine import XttsEngine
        return XttsEngine(settings.xtts)
    raise EngineError(f"unknown TTS engine '{name}' (use piper, xtts or espeak)")


def check_model(settings: EngineSettings) -> str | None:
    """Why the voice model `settings.engine` needs is not there, or None. Cheap: the model
    store is stat-ed, nothing loads (an espeak-ng voice is only known by loading it)."""
    from wallie_common import model_store
    try:
        if settings.engine == 'piper':
            model_store.resolve_file(settings.piper.voice, settings.piper.model_path or None)
        elif settings.engine == 'xtts':
            model_store.resolve(settings.xtts.model_id, settings.xtts.model_path or None)
    except model_store.ModelStoreError as exc:
        return str(exc)
    return None


@dataclass
class LoadResult:
    """A loaded, warmed-up engine; ``fallback_reason`` is set when it is not the one asked."""

    engine: TtsEngine
    requested: str
    fallback_reason: Optional[str] = None
    load_s: float = 0.0


def load_engine(settings: EngineSettings, allow_fallback: Optional[bool] = None,
                engine: Optional[str] = None) -> LoadResult:
    """Load and warm up the requested engine; fall back to espeak-ng if it fails.

    Raises EngineError when neither the requested engine nor the fallback works (or when
    falling back is not allowed).
    """
    import time
    requested = engine or settings.engine
    fallback = settings.fallback_to_espeak if allow_fallback is None else allow_fallback
    t0 = time.monotonic()
    try:
        eng = _load_one(settings, requested)
        return LoadResult(eng, requested, None, time.monotonic() - t0)
    except Exception as exc:  # noqa: BLE001 - any load failure triggers the fallback
        reason = str(exc) if isinstance(exc, EngineError) else f'{requested}: {exc!r}'
        if not fallback or requested == 'espeak':
            raise EngineError(reason) from exc
        _LOG.warning('TTS engine %s failed to load (%s); falling back to espeak-ng',
                     requested, reason)
    try:
        eng = _load_one(settings, 'espeak')
    except Exception as exc:  # noqa: BLE001
        raise EngineError(f'{reason}; the espeak-ng fallback failed too: {exc}') from exc
    return LoadResult(eng, requested, reason, time.monotonic() - t0)


def _load_one(settings: EngineSettings, name: str) -> TtsEngine:
    eng = create_engine(settings, name)
    eng.load()
    try:
        eng.warm_up()
    except Exception:
        eng.close()
        raise
    return eng
