"""Synthetic speech, noise and rooms: the one renderer of Wallie's test, eval and training audio.

Pure Python (no ROS), used offline only: by the wake word data (``wallie_audio.wake_data``),
the spoken QA evaluation set (``wallie_eval``) and the fixture bags
(``wallie_cli.fixtures.generate``). Each of those pins what it renders (sha256 in the eval
manifest and the fixture manifest, a wake model trained on the wake data), so every function
here must keep its output bit-identical; change one only together with what hashes it.

- speech: espeak-ng, Piper (en_US joe from the model store) and flite, read at the
  synthesizer's own rate;
- resampling to 16 kHz: polyphase (scipy, float64; the eval set and fixtures) or soxr
  (float32; the wake data);
- levels: RMS, the active speech level, trimming, the speech bounds;
- noise colours: white, pink, babble (a crowd of time-reversed espeak talkers), music, hum;
- rooms: pyroomacoustics shoebox rooms (image source method), and a synthetic exponentially
  decaying reverb tail.

Everything is seeded, so a clip renders to the same bytes on the same espeak-ng / Piper /
onnxruntime / pyroomacoustics versions.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

RATE = 16000
PIPER_MODEL = 'piper-en_US-joe-medium'
PIPER_SEED = 20240601
ESPEAK_WPM = 175          # espeak-ng's own default rate; `speed` scales it


class SynthesisError(RuntimeError):
    """A voice could not be synthesized (missing program or model)."""


# --------------------------------------------------------------------------- resampling
def to_16k(x: np.ndarray, rate: int) -> np.ndarray:
    """Polyphase resampling to 16 kHz (scipy), float64."""
    from scipy.signal import resample_poly
    if rate == RATE:
        return x.astype(np.float64)
    g = np.gcd(RATE, rate)
    return resample_poly(x.astype(np.float64), RATE // g, rate // g)


def to_16k_soxr(x: np.ndarray, rate: int) -> np.ndarray:
    """soxr resampling to 16 kHz, float32 (what the wake data is made with)."""
    if rate == RATE:
        return x.astype(np.float32)
    import soxr
    return soxr.resample(x.astype(np.float32), rate, RATE).astype(np.float32)


# --------------------------------------------------------------------------- speech
def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """A WAV file's samples (float64 in [-1, 1], channels averaged) and its rate."""
    import soundfile as sf
    x, rate = sf.read(io.BytesIO(data), dtype='float64')
    if x.ndim > 1:
        x = x.mean(axis=1)
    return x, int(rate)


def espeak_native(text: str, voice: str, wpm: int,
                  pitch: int | None = None) -> tuple[np.ndarray, int]:
    """espeak-ng speech at its own rate: (float64 samples, rate)."""
    exe = shutil.which('espeak-ng')
    if exe is None:
        raise SynthesisError('espeak-ng not found: apt-get install -y espeak-ng')
    cmd = [exe, '-v', voice, '-s', str(wpm)]
    if pitch is not None:
        cmd += ['-p', str(pitch)]
    return read_wav(subprocess.run([*cmd, '--stdout', text], check=True,
                                   capture_output=True).stdout)


@functools.lru_cache(maxsize=256)
def espeak(text: str, voice: str, speed: float = 1.0) -> np.ndarray:
    """espeak-ng speech at 16 kHz, float64 in [-1, 1] (175 words/min x speed)."""
    return to_16k(*espeak_native(text, voice, int(round(ESPEAK_WPM * speed))))


def flite_native(text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
    """flite speech at its own rate: (float64 samples, rate)."""
    if shutil.which('flite') is None:
        raise SynthesisError('flite not found: apt-get install -y flite')
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / 'x.wav'
        subprocess.run(['flite', '-voice', voice, '--setf',
                        f'duration_stretch={1.0 / speed:.3f}', '-t', text, '-o', str(out)],
                       check=True, capture_output=True)
        return read_wav(out.read_bytes())


def load_piper(seed: int | None = None) -> Any:
    """The Piper joe voice from the model store. With `seed`, onnxruntime's seed is set just
    before the load (its sampling noise generator is seeded then)."""
    import onnxruntime
    from piper import PiperVoice

    from wallie_common import model_store
    try:
        model = model_store.resolve_file(PIPER_MODEL)
    except model_store.ModelNotFoundError as exc:
        raise SynthesisError(str(exc)) from None
    if seed is not None:
        onnxruntime.set_seed(seed)
    return PiperVoice.load(model)


# One loaded voice per load seed, reused for every clip.
piper_voice = functools.lru_cache(maxsize=2)(load_piper)


def piper_native(tts: Any, text: str, speed: float = 1.0, *, seed: int | None = None,
                 noise_scale: float | None = None,
                 noise_w_scale: float | None = None) -> tuple[np.ndarray, int]:
    """Piper speech at the voice's rate: (float64 samples, rate). `seed` is set in
    onnxruntime first; noise scales None are the voice's own."""
    import onnxruntime
    from piper import SynthesisConfig
    if seed is not None:
        onnxruntime.set_seed(seed)
    cfg = SynthesisConfig(length_scale=1.0 / speed, noise_scale=noise_scale,
                          noise_w_scale=noise_w_scale)
    pcm = np.concatenate([c.audio_int16_array for c in tts.synthesize(text, syn_config=cfg)])
    return pcm.astype(np.float64) / 32768.0, int(tts.config.sample_rate)


def piper(text: str, speed: float = 1.0) -> np.ndarray:
    """Piper joe at 16 kHz without sampling noise (noise scales 0), float64."""
    return to_16k(*piper_native(piper_voice(PIPER_SEED), text, speed, seed=PIPER_SEED,
                                noise_scale=0.0, noise_w_scale=0.0))


@functools.lru_cache(maxsize=None)
def piper_sampled(text: str, speed: float = 1.0) -> np.ndarray:
    """Piper joe at 16 kHz with the voice's own sampling noise, float64: deterministic
    because every clip gets a voice loaded right after seeding onnxruntime."""
    return to_16k(*piper_native(load_piper(PIPER_SEED), text, speed))


def speech(text: str, voice: str, speed: float = 1.0, *, sampled: bool = False) -> np.ndarray:
    """'espeak:<voice>' or 'piper:joe' at 16 kHz, float64 (`sampled`: Piper's sampling
    noise on, see :func:`piper_sampled`)."""
    engine, name = voice.split(':', 1)
    if engine == 'espeak':
        return espeak(text, name, speed)
    if engine == 'piper' and name == 'joe':
        return piper_sampled(text, speed) if sampled else piper(text, speed)
    raise ValueError(f'unknown voice {voice!r}')


# --------------------------------------------------------------------------- seeds
def seed_of(*parts: object) -> int:
    """A stable seed from names and numbers: crc32 of their '/'-joined text."""
    return zlib.crc32('/'.join(map(str, parts)).encode())


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded by :func:`seed_of` the parts."""
    return np.random.default_rng(seed_of(*parts))


# --------------------------------------------------------------------------- levels
def rms(x: np.ndarray) -> float:
    """Root mean square (computed in float64), 0 for no samples."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def active_level(x: np.ndarray, frame: int = RATE // 100) -> float:
    """Active speech RMS: the 10 ms frames within 30 dB of the loudest one."""
    m = len(x) // frame
    energy = np.mean(np.square(x[: m * frame].reshape(m, frame)), axis=1)
    return float(np.sqrt(np.mean(energy[energy > energy.max() * 1e-3])))


def trim(x: np.ndarray, db: float, margin: int = 0) -> np.ndarray:
    """Cut the leading/trailing samples below `db` re the peak, keeping `margin` samples."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0:
        return x[:0]
    above = np.flatnonzero(np.abs(x) > peak * 10 ** (db / 20))
    return x[max(0, int(above[0]) - margin): int(above[-1]) + margin + 1]


def level_speech(x: np.ndarray, dbfs: float, peak_limit: float) -> np.ndarray:
    """`x` scaled to an active speech level of `dbfs`, then down to `peak_limit` where it
    would peak above it."""
    x = x / active_level(x) * 10 ** (dbfs / 20)
    if np.abs(x).max() > peak_limit:
        x *= peak_limit / np.abs(x).max()
    return x


def at_snr(noise: np.ndarray, level: float, snr_db: float) -> np.ndarray:
    """`noise` scaled to `snr_db` below the speech level `level` (RMS)."""
    return noise / (rms(noise) or 1.0) * level * 10 ** (-snr_db / 20)


def envelope(x: np.ndarray, window: int = RATE // 100) -> np.ndarray:
    """Centred sliding RMS over `window` samples (10 ms), one value per sample."""
    return np.sqrt(np.maximum(np.convolve(x * x, np.ones(window) / window, mode='same'), 0.0))


def speech_bounds(x: np.ndarray, threshold: float) -> tuple[int, int]:
    """First and last sample whose envelope exceeds `threshold` (linear amplitude)."""
    above = np.flatnonzero(envelope(x) > threshold)
    return int(above[0]), int(above[-1])


# --------------------------------------------------------------------------- noise
def white(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of white Gaussian noise, unit variance."""
    return rng.standard_normal(n)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise by spectral shaping of white noise, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1.0 / RATE), 20.0))
    out = np.fft.irfft(spec, n)
    return out / (rms(out) or 1.0)


def reversed_window(talker: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of `talker` time-reversed and looped, from a random start: speech-like,
    no words."""
    t = talker[::-1]
    loop = np.tile(t, int(np.ceil(n / len(t))) + 2)
    start = int(rng.integers(0, len(t)))
    return loop[start:start + n]


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
    """A crowd of six time-reversed espeak talkers, each at unit RMS; unit RMS."""
    out = np.zeros(n)
    for line, voice in zip(BABBLE_LINES, BABBLE_VOICES):
        seg = reversed_window(espeak(line, voice, 1.0), n, rng)
        out += seg / (rms(seg) or 1.0)
    return out / (rms(out) or 1.0)


def notes(t: np.ndarray, scale: np.ndarray, note_len: int, decay_s: float,
          rng: np.random.Generator) -> Iterator[tuple[slice, float, np.ndarray, np.ndarray]]:
    """A random note of `scale` every `note_len` samples over the time axis `t`:
    (where, pitch, time since the note began, its decaying envelope with an 80-sample
    attack)."""
    env = np.exp(-np.arange(note_len) / (decay_s * RATE))
    env[:80] *= np.linspace(0, 1, 80)
    n = t.shape[0]
    for start in range(0, n, note_len):
        f0 = scale[int(rng.integers(0, len(scale)))]
        seg = slice(start, min(n, start + note_len))
        yield seg, f0, t[seg] - t[start], env[: seg.stop - seg.start]


C_MAJOR = np.array([261.63, 293.66, 329.63, 349.23, 392.0, 440.0, 493.88, 523.25])


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """A little tune: notes with harmonics and envelopes over a sustained chord; unit RMS."""
    t = np.arange(n) / RATE
    out = np.zeros(n)
    for f0 in (130.81, 164.81, 196.0):  # C major chord, soft pad
        out += 0.3 * np.sin(2 * np.pi * f0 * t)
    for seg, f0, tt, env in notes(t, C_MAJOR, int(0.25 * RATE), 0.12, rng):
        tone = sum(a * np.sin(2 * np.pi * k * f0 * tt) for k, a in ((1, 1.0), (2, 0.4),
                                                                     (3, 0.2)))
        out[seg] += tone * env
    return out / (rms(out) or 1.0)


def mains(t: np.ndarray, f: float) -> np.ndarray:
    """Mains hum at `f` Hz with its 2nd and 3rd harmonics."""
    out = np.zeros(t.shape[0])
    for k, a in ((1, 1.0), (2, 0.5), (3, 0.3)):
        out += a * np.sin(2 * np.pi * f * k * t)
    return out


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """50 Hz mains hum plus a little fan (pink) noise; unit RMS."""
    out = mains(np.arange(n) / RATE, 50) + 0.1 * pink(n, rng)
    return out / (rms(out) or 1.0)


NOISES = {'white': white, 'pink': pink, 'babble': babble, 'music': music, 'hum': hum}


# --------------------------------------------------------------------------- rooms
def shoebox(dims: Any, rt60_s: float, max_order: int) -> Any:
    """A pyroomacoustics shoebox room with the absorption of the target RT60 (Sabine), no
    air absorption, image sources up to `max_order`."""
    import pyroomacoustics as pra
    absorption, order = pra.inverse_sabine(rt60_s, dims)
    return pra.ShoeBox(dims, fs=RATE, materials=pra.Material(absorption),
                       max_order=min(order, max_order), air_absorption=False)


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
        room = shoebox(list(self.dims), self.rt60_s, self.max_order)
        room.add_source(list(self.source), signal=dry)
        room.add_microphone(list(self.mic))
        room.simulate()
        return np.asarray(room.mic_array.signals[0], dtype=np.float64)


def tail_reverb(x: np.ndarray, rt60_s: float, rng: np.random.Generator,
                drr_db: float = 3.0) -> np.ndarray:
    """Room-like reverb without a room: the direct path at lag 0 (speech start/end times
    are unchanged) plus an exponentially decaying noise tail (direct-to-reverberant ratio
    `drr_db`); the output is longer than `x` by the RT60."""
    from scipy.signal import fftconvolve
    n = int(rt60_s * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60_s)  # -60 dB at rt60
    tail[: int(0.003 * RATE)] = 0.0  # 3 ms before the first reflection
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(np.square(tail)))
    ir = tail
    ir[0] = 1.0
    return fftconvolve(x, ir)[: len(x) + n]
