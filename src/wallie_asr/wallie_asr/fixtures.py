"""Test/benchmark fixtures: committed speech clips, generated non-speech, WER (no ROS)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from wallie_asr.config import SAMPLE_RATE

DATA_DIR = Path(__file__).with_name('data')  # package data: installed with wallie_asr

_NUMBERS = {str(i): w for i, w in enumerate(
    'zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen '
    'fifteen sixteen seventeen eighteen nineteen twenty'.split())}


@dataclass(frozen=True)
class Clip:
    """One fixture: mono float32 16 kHz audio, its words ('' = no speech) and speech end."""

    id: str
    audio: np.ndarray
    text: str
    speech_end_s: float
    voice: str = ''

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLE_RATE


def speech_clips(data_dir: Optional[Path] = None) -> list[Clip]:
    """The committed espeak-ng questions (see data/make_fixtures.py)."""
    import soundfile as sf
    root = Path(data_dir or DATA_DIR)
    clips = []
    for e in json.loads((root / 'fixtures.json').read_text()):
        audio, rate = sf.read(root / f"{e['id']}.flac", dtype='float32')
        assert rate == SAMPLE_RATE, f"{e['id']}: {rate} Hz"
        clips.append(Clip(e['id'], audio, e['text'], e['speech_end_s'], e['voice']))
    return clips


def nonspeech_clips(seconds: float = 2.5, seed: int = 7) -> list[Clip]:
    """Silence, noises and music-like tones that must produce no transcript."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    brown = np.cumsum(rng.standard_normal(n))
    brown = brown - np.linspace(brown[0], brown[-1], n)
    brown = brown / np.abs(brown).max() * 0.3
    notes = [262, 330, 392, 523, 440, 349, 294, 392]
    seg = n // len(notes)
    st = np.arange(seg) / SAMPLE_RATE
    env = np.minimum(1.0, st * 30) * np.exp(-st * 2)
    melody = np.concatenate([0.25 * env * (np.sin(2 * np.pi * f * st)
                                           + 0.4 * np.sin(2 * np.pi * 2 * f * st)
                                           + 0.2 * np.sin(2 * np.pi * 1.5 * f * st))
                             for f in notes])
    melody = np.pad(melody, (0, n - melody.size))
    clicks = np.where(np.arange(n) % 4000 < 40, 0.5, 0.0)
    raw = {
        'silence': np.zeros(n),
        'white_noise': rng.standard_normal(n) * 0.05,
        'loud_noise': rng.standard_normal(n) * 0.2,
        'brown_noise': brown,
        'hum_50hz': 0.1 * np.sin(2 * np.pi * 50 * t) + 0.03 * np.sin(2 * np.pi * 150 * t),
        'tones_melody': melody,
        'clicks': clicks,
    }
    return [Clip(k, np.clip(v, -1, 1).astype(np.float32), '', 0.0) for k, v in raw.items()]


def normalize_for_wer(text: str) -> str:
    """Lowercase words, no punctuation, small numbers spelled out, "o'clock" kept."""
    text = text.lower().replace("o'clock", 'oclock').replace('’', "'")
    text = re.sub(r'(\d+):00', r'\1', text)
    words = re.sub(r"[^a-z0-9' ]+", ' ', text).split()
    return ' '.join(_NUMBERS.get(w, w) for w in words)


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus word error rate after normalize_for_wer."""
    import jiwer
    refs = [normalize_for_wer(r) for r in references]
    hyps = [normalize_for_wer(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))
