"""Wake word engines: the speech-embedding spotter (default "wallie" and any enrolled word,
`wake_model`), openWakeWord's own models (ONNX), Porcupine 1.9.5 built-ins, a transcript
phrase, and none. Each takes float32 16 kHz blocks and returns a detection or None."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

RATE = 16000
ENGINES = ('embedding', 'openwakeword', 'porcupine', 'transcript', 'none')
OWW_CHUNK = 1280            # openWakeWord's native hop (80 ms)
WAKE_WORD_DIR = Path('~/.wallie_voice_bot/wake_words').expanduser()


@dataclass(frozen=True)
class WakeHit:
    """A wake word detection: the keyword, its score and the engine that found it."""

    keyword: str
    score: float
    engine: str
    # samples of the audio given to the engine that came after the point where the word
    # was detected (a catch-up call feeds several blocks at once); 0 = at the end
    samples_after: int = 0


class WakeEngine(Protocol):
    """What the voice gate needs of a wake word engine: a detection or None per block, and a
    reset."""

    name: str
    acoustic: bool           # False: the engine never fires on audio (transcript, none)

    def process(self, block: np.ndarray) -> WakeHit | None:
        ...

    def reset(self) -> None:
        ...


def _to_s16(block: np.ndarray) -> np.ndarray:
    return (np.clip(block * 32768.0, -32768, 32767)).astype(np.int16)


def sensitivity_to_threshold(sensitivity: float) -> float:
    """The brief's wake_word_sensitivity (0 = strict, 1 = eager) as a score threshold."""
    return float(min(0.95, max(0.05, 1.0 - sensitivity)))


class OpenWakeWord:
    """openWakeWord 0.5.1 with its bundled ONNX models (inference_framework='onnx')."""

    name = 'openwakeword'
    acoustic = True

    def __init__(self, models: Sequence[str] = ('hey_jarvis',), sensitivity: float = 0.5,
                 refractory_ms: int = 1500) -> None:
        from openwakeword.model import Model
        paths = [oww_model_file(m) or m for m in models]   # bundled: by name
        self._model = Model(wakeword_models=paths, inference_framework='onnx')
        self.keywords = list(self._model.models.keys())
        self.threshold = sensitivity_to_threshold(sensitivity)
        self._buf = np.zeros(0, dtype=np.int16)
        self._refractory = int(refractory_ms * RATE / 1000)
        self._since_hit = 10 ** 9

    def set_sensitivity(self, sensitivity: float) -> None:
        self.threshold = sensitivity_to_threshold(sensitivity)

    def reset(self) -> None:
        self._model.reset()
        self._buf = np.zeros(0, dtype=np.int16)

    def process(self, block: np.ndarray) -> WakeHit | None:
        self._buf = np.concatenate([self._buf, _to_s16(block)])
        self._since_hit += block.shape[0]
        hit = None
        while self._buf.shape[0] >= OWW_CHUNK:
            chunk, self._buf = self._buf[:OWW_CHUNK], self._buf[OWW_CHUNK:]
            scores = self._model.predict(chunk)
            best = max(scores.items(), key=lambda kv: kv[1]) if scores else None
            if best and best[1] >= self.threshold and self._since_hit >= self._refractory:
                hit = WakeHit(best[0], float(best[1]), self.name)
                self._since_hit = 0
        if hit is not None:
            # Clear the feature buffer so the same utterance does not fire twice.
            self._model.reset()
        return hit


class Porcupine:
    """pvporcupine 1.9.5 built-in keywords (no AccessKey) or .ppn files (newer versions
    need `access_key`)."""

    name = 'porcupine'
    acoustic = True

    def __init__(self, keywords: Sequence[str] = ('porcupine',), sensitivity: float = 0.5,
                 access_key: str = '') -> None:
        import pvporcupine
        paths: list[str] = []
        names: list[str] = []
        builtins: list[str] = []
        for k in keywords:
            p = Path(k).expanduser()
            if not p.exists() and (WAKE_WORD_DIR / f'{k}.ppn').exists():
                p = WAKE_WORD_DIR / f'{k}.ppn'
            if p.exists():
                paths.append(str(p))
                names.append(p.stem)
            else:
                builtins.append(k.replace('_', ' '))
        if paths and builtins:
            raise ValueError('mix of built-in keywords and .ppn files is not supported')
        sens = [float(min(1.0, max(0.0, sensitivity)))] * (len(paths) or len(builtins))
        kwargs: dict = {'sensitivities': sens}
        if paths:
            kwargs['keyword_paths'] = paths
        else:
            unknown = [b for b in builtins if b not in pvporcupine.KEYWORDS]
            if unknown:
                raise ValueError(f'unknown Porcupine keyword(s) {unknown}; built-ins: '
                                 f'{sorted(pvporcupine.KEYWORDS)} or a .ppn in {WAKE_WORD_DIR}')
            kwargs['keywords'] = builtins
            names = builtins
        if access_key:
            kwargs['access_key'] = access_key
        self._handle = pvporcupine.create(**kwargs)
        self.keywords = names
        self._frame = int(self._handle.frame_length)
        self._buf = np.zeros(0, dtype=np.int16)

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.int16)

    def process(self, block: np.ndarray) -> WakeHit | None:
        self._buf = np.concatenate([self._buf, _to_s16(block)])
        hit = None
        while self._buf.shape[0] >= self._frame:
            chunk, self._buf = self._buf[:self._frame], self._buf[self._frame:]
            idx = self._handle.process(chunk)
            if idx >= 0:
                hit = WakeHit(self.keywords[idx].replace(' ', '_'), 1.0, self.name)
        return hit

    def close(self) -> None:
        self._handle.delete()


def _normalise(text: str) -> str:
    return ' '.join(re.sub(r"[^a-z0-9' ]+", ' ', text.lower()).split())


# Spellings ASR produces for the brief's default wake word "wallie".
PHRASE_VARIANTS = {
    'wallie': ('wallie', 'wally', 'wali', 'walley', 'wall e', 'wall-e', 'wolly', 'wally e'),
}


def phrase_variants(phrase: str) -> tuple[str, ...]:
    """The normalised wake phrase and the spellings ASR gives for it (PHRASE_VARIANTS, keeping a
    leading "hey")."""
    p = _normalise(phrase)
    extra = PHRASE_VARIANTS.get(p.replace('hey ', ''), ())
    prefix = 'hey ' if p.startswith('hey ') else ''
    return (p,) + tuple(_normalise(prefix + v) for v in extra)


def transcript_has_phrase(text: str, phrase: str) -> bool:
    """True if the (normalised) transcript contains the wake phrase as whole words."""
    t = f' {_normalise(text)} '
    return any(f' {v} ' in t for v in phrase_variants(phrase) if v)


class TranscriptWake:
    """No acoustic detector: every utterance is forwarded with `phrase` set in
    UtteranceAudio.wake_phrase and ASR decides (works for any word, e.g. "wallie")."""

    name = 'transcript'
    acoustic = False

    def __init__(self, phrase: str = 'wallie') -> None:
        self.phrase = _normalise(phrase)
        self.keywords = [self.phrase]

    def reset(self) -> None:
        pass

    def process(self, block: np.ndarray) -> WakeHit | None:
        return None

    def matches(self, text: str) -> bool:
        return transcript_has_phrase(text, self.phrase)


class NoWake:
    """Always listening (or push-to-talk only)."""

    name = 'none'
    acoustic = False
    keywords: list[str] = []

    def reset(self) -> None:
        pass

    def process(self, block: np.ndarray) -> WakeHit | None:
        return None


def oww_model_file(name: str) -> str | None:
    """A user's openWakeWord ONNX model for `name`: a file path, or `<name>.onnx` in
    WAKE_WORD_DIR; None if neither (it may still be a model bundled with openWakeWord)."""
    path = Path(name).expanduser()
    if path.is_file():
        return str(path)
    if (WAKE_WORD_DIR / f'{name}.onnx').is_file():
        return str(WAKE_WORD_DIR / f'{name}.onnx')
    return None


def oww_bundled(name: str) -> bool:
    """True if openWakeWord ships a model for `name` (matched as openWakeWord does)."""
    import openwakeword
    return any(name.replace(' ', '_') in Path(bundled).name and Path(bundled).is_file()
               for bundled in openwakeword.get_pretrained_model_paths('onnx'))


def check_wake(engine: str, wake_word: str) -> str | None:
    """Why `wake_word` has no model for `engine`, or None. Cheap: model files are looked
    up, nothing loads (Porcupine keywords are only known to Porcupine, at load)."""
    if engine != 'openwakeword':
        return None
    words = [w.strip() for w in wake_word.split(',') if w.strip()] or ['hey_jarvis']
    missing = [w for w in words if oww_model_file(w) is None and not oww_bundled(w)]
    if not missing:
        return None
    return (f"wake.word: no openWakeWord model for {', '.join(repr(w) for w in missing)}: "
            f'give a .onnx path, put <name>.onnx into {WAKE_WORD_DIR}, or use a model '
            'bundled with openWakeWord (alexa, hey_jarvis, hey_mycroft, hey_rhasspy, ...)')


def make_engine(engine: str, wake_word: str, sensitivity: float = 0.5,
                access_key: str = '') -> WakeEngine:
    """Build the engine named by the `wake.engine` parameter."""
    words = [w.strip() for w in wake_word.split(',') if w.strip()]
    if engine == 'embedding':
        from wallie_audio.wake_model import EmbeddingWake
        return EmbeddingWake(words or ['wallie'], sensitivity)
    if engine == 'openwakeword':
        return OpenWakeWord(words or ['hey_jarvis'], sensitivity)
    if engine == 'porcupine':
        return Porcupine(words or ['porcupine'], sensitivity, access_key)
    if engine == 'transcript':
        return TranscriptWake(wake_word or 'wallie')
    if engine == 'none':
        return NoWake()
    raise ValueError(f'unknown wake engine {engine!r}; one of {ENGINES}')
