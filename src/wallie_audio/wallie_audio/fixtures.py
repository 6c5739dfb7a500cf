"""Synthesized speech fixtures (espeak-ng) with known speech boundaries, for tests and the
benchmark. Deterministic: same text/voice/seed -> same audio."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RATE = 16000
VOICES = ('en-us', 'en-gb+m3', 'en-us+f3')


def have_espeak() -> bool:
    """True if espeak-ng is on the PATH (the fixtures are synthesized with it)."""
    return shutil.which('espeak-ng') is not None


def synth(text: str, voice: str = 'en-us', speed: int = 160) -> np.ndarray:
    """espeak-ng speech, trimmed to the voiced part, float32 16 kHz mono."""
    import soundfile as sf
    import soxr
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / 'x.wav'
        subprocess.run(['espeak-ng', '-v', voice, '-s', str(speed), '-w', str(wav), text],
                       check=True, capture_output=True)
        x, sr = sf.read(str(wav), dtype='float32')
    y = soxr.resample(x, sr, RATE).astype(np.float32)
    return trim(y)


def trim(x: np.ndarray, floor_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing samples below floor_db of the peak (exact speech boundaries)."""
    peak = float(np.max(np.abs(x))) or 1.0
    idx = np.nonzero(np.abs(x) > peak * 10 ** (floor_db / 20))[0]
    if idx.size == 0:
        return x[:0]
    return x[idx[0]:idx[-1] + 1]


@dataclass
class Segment:
    """Where one labelled part (wake word, speech, noise) lies in a Scene, in seconds."""

    label: str                       # 'wake' | 'speech' | 'noise'
    start_s: float
    end_s: float
    text: str = ''


@dataclass
class Scene:
    """Synthesized 16 kHz test audio with the segments it contains."""

    audio: np.ndarray
    segments: list[Segment] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / RATE

    def write(self, path: Path) -> Path:
        import soundfile as sf
        sf.write(str(path), self.audio, RATE, subtype='PCM_16')
        return path


def scene(parts: list[tuple[str, object]], noise_db: float | None = None,
          seed: int = 0, level: float = 0.5) -> Scene:
    """Concatenate parts: ('silence', seconds) | ('wake'|'speech', (text, voice)).
    Speech is normalised to `level` peak; optional white noise at noise_db dBFS RMS."""
    rng = np.random.default_rng(seed)
    chunks: list[np.ndarray] = []
    segs: list[Segment] = []
    t = 0
    for kind, arg in parts:
        if kind == 'silence':
            x = np.zeros(int(float(arg) * RATE), np.float32)  # type: ignore[arg-type]
        else:
            text, voice = str(arg[0]), str(arg[1])  # type: ignore[index]
            x = synth(text, voice)
            x = x * (level / (float(np.max(np.abs(x))) or 1.0))
            segs.append(Segment(kind, t / RATE, (t + x.shape[0]) / RATE, text))
        chunks.append(x.astype(np.float32))
        t += x.shape[0]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if noise_db is not None:
        audio = audio + rng.normal(0, 10 ** (noise_db / 20), audio.shape).astype(np.float32)
    return Scene(np.clip(audio, -1, 1).astype(np.float32), segs)


def echo_path(reference: np.ndarray, delay_ms: float = 60.0, gain: float = 0.4,
              reverb: float = 0.05, seed: int = 1) -> np.ndarray:
    """Simulated speaker->mic path: delay, gain and a short decaying room tail."""
    from scipy.signal import lfilter
    rng = np.random.default_rng(seed)
    ir = np.zeros(800)
    ir[0] = 1.0
    ir[1:] = rng.normal(0, 1, 799) * np.exp(-np.arange(1, 800) / 150.0) * reverb
    d = int(delay_ms * RATE / 1000)
    y = np.zeros(reference.shape[0] + d, np.float32)
    y[d:] = lfilter(ir, [1.0], reference) * gain
    return y
