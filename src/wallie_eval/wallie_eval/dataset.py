"""The spoken QA evaluation set: which clip says what, in which voice and room, and its cache.

The repository holds this generator and ``manifest.json`` (one entry per clip: the text, the
accepted answers, voice, speed, noise, room, seed and the sha256 of the rendered WAV), not the
audio. Clips are rendered on demand into the cache (``~/.cache/wallie/spoken_qa/v<N>/``, or
``$WALLIE_EVAL_CACHE``) and checked against the manifest's sha256 before use; a missing render,
a truncated or corrupted file gives a :class:`ClipError` naming the file, and the evaluation
goes on with the other clips.

Layout of the set: every conversation (a question, or a two-turn follow-up) is spoken by two
voices of the tuning half and two of the held-out half, assigned round robin so that each
voice gets the same share. Speeds cycle 0.85 ... 1.25. Half of the clips (alternately) carry
noise (white, pink, babble, music at 5-25 dB SNR) in a simulated room with reverb.

Regenerate the manifest after changing questions, voices or rendering:
    python -m wallie_eval.dataset manifest          # renders everything, writes manifest.json
    python -m wallie_eval.dataset render            # renders missing clips into the cache
    python -m wallie_eval.dataset verify            # re-hashes the cache
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from wallie_audio import synthetic as S
from wallie_eval import questions as qs
from wallie_eval import voices as vx

VERSION = 2
RATE = S.RATE          # the clips' sample rate
HERE = Path(__file__).resolve().parent
MANIFEST = HERE / 'manifest.json'
LEAD_S = 0.5            # noise/silence before the speech
TRAIL_S = 1.5           # ... and after it (the live graph needs the endpoint silence)
SPEECH_DBFS = -26.0     # active speech level of the dry signal
PEAK_LIMIT = 0.89
TRIM_DB = -50.0         # synthesizer silences: cut below -50 dB re peak ...
TRIM_MARGIN = RATE // 20   # ... keeping 50 ms
BOUNDARY_DB = -25.0     # speech bounds: the 10 ms envelope above the active level - 25 dB
VOICES_PER_HALF = 2     # each conversation is spoken by this many voices of each half
SPEEDS = (0.85, 0.95, 1.05, 1.15, 1.25)
NOISE_KINDS = ('white', 'pink', 'babble', 'music')
SNRS_DB = (5.0, 10.0, 15.0, 20.0, 25.0)
SPLITS = ('tuning', 'heldout')


class ClipError(RuntimeError):
    """A clip of the set cannot be used; the message names the file and the fix."""

    def __init__(self, clip_id: str, path: Path | None, reason: str) -> None:
        super().__init__(f'{clip_id}: {path or "(no file)"}: {reason}')
        self.clip_id = clip_id
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Clip:
    """One rendered utterance of the set (a manifest entry)."""

    id: str
    split: str
    question: str              # questions.Question key
    text: str
    accept: tuple[str, ...]
    reject: tuple[str, ...]
    category: str
    voice: str
    family: str
    speed: float
    noise: dict | None         # {'kind', 'snr_db'} or None
    room: dict | None          # voices.Room.to_dict() or None
    seed: int
    conversation: str = ''     # all turns of one rendered conversation share it
    turn: int = 1
    speech_start_s: float = 0.0
    speech_end_s: float = 0.0
    duration_s: float = 0.0
    sha256: str = ''
    bytes: int = 0

    @property
    def condition(self) -> str:
        if self.noise is None:
            return 'clean'
        return f'{self.noise["kind"]}+room'

    @property
    def scored(self) -> bool:
        return bool(self.accept)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d['accept'], d['reject'] = list(self.accept), list(self.reject)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> 'Clip':
        d = dict(d)
        d['accept'], d['reject'] = tuple(d.get('accept', ())), tuple(d.get('reject', ()))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def specs() -> list[Clip]:
    """Every clip of the set (without the render results), in conversation order."""
    out: list[Clip] = []
    halves = {s: [v for v in vx.VOICES if v.split == s] for s in SPLITS}
    k = 0                                          # clip counter: speeds and conditions cycle
    for ci, conv in enumerate(qs.conversations()):
        for split in SPLITS:
            pool = halves[split]
            for j in range(VOICES_PER_HALF):
                voice = pool[(ci * VOICES_PER_HALF + j) % len(pool)]
                conv_id = f'{conv[0].group or conv[0].key}.{voice.tag}'
                noisy = (ci + j) % 2 == 1          # half of the conversations of each voice
                seed = S.seed_of(VERSION, conv_id)
                rng = np.random.default_rng(seed)
                noise = room = None
                if noisy:
                    noise = {'kind': NOISE_KINDS[(ci // 2 + j) % len(NOISE_KINDS)],
                             'snr_db': SNRS_DB[int(rng.integers(0, len(SNRS_DB)))]}
                    room = S.Room.random(rng).to_dict()
                speed = SPEEDS[k % len(SPEEDS)]
                k += 1
                for q in conv:
                    out.append(Clip(
                        id=f'{q.key}.{voice.tag}', split=split, question=q.key, text=q.text,
                        accept=q.accept, reject=q.reject, category=q.category,
                        voice=voice.name, family=voice.family, speed=speed, noise=noise,
                        room=room, seed=S.seed_of(VERSION, q.key, voice.tag),
                        conversation=conv_id, turn=q.turn or 1))
    return out


# --------------------------------------------------------------------------- rendering
def render(clip: Clip) -> tuple[np.ndarray, dict[str, float]]:
    """int16 PCM at 16 kHz and the speech bounds (s) of one clip."""
    dry = S.trim(S.speech(clip.text, clip.voice, clip.speed), TRIM_DB, TRIM_MARGIN)
    dry = S.level_speech(dry, SPEECH_DBFS, PEAK_LIMIT)
    level = S.active_level(dry)
    first, last = S.speech_bounds(dry, level * 10 ** (BOUNDARY_DB / 20))
    lead = int(LEAD_S * RATE)
    wet, delay = dry, 0
    if clip.room is not None:
        room = S.Room.from_dict(clip.room)
        wet = room.apply(dry)
        delay = room.direct_delay
        # keep the direct sound at the dry level (the room changes the loudness, not the SNR)
        wet = wet / (S.active_level(wet) or 1.0) * level
    total = lead + delay + last + 1 + int(TRAIL_S * RATE)
    audio = np.zeros(total)
    body = wet[: total - lead]
    audio[lead: lead + len(body)] = body
    if clip.noise is not None:
        rng = np.random.default_rng(clip.seed)
        noise = S.NOISES[clip.noise['kind']](total, rng)
        audio += S.at_snr(noise, level, clip.noise['snr_db'])
    peak = float(np.abs(audio).max())
    if peak > 0.99:
        audio *= 0.99 / peak
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    bounds = {'speech_start_s': round((lead + delay + first) / RATE, 4),
              'speech_end_s': round((lead + delay + last) / RATE, 4),
              'duration_s': round(total / RATE, 4)}
    return pcm, bounds


def wav_bytes(pcm: np.ndarray) -> bytes:
    """The 16-bit PCM samples as the bytes of a WAV file at the clips' rate."""
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, pcm, RATE, subtype='PCM_16', format='WAV')
    return buf.getvalue()


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where rendered clips live: `cache`, else $WALLIE_EVAL_CACHE, else
    ~/.cache/wallie/spoken_qa; one subdirectory per generator version."""
    root = cache or os.environ.get('WALLIE_EVAL_CACHE') or '~/.cache/wallie/spoken_qa'
    return Path(root).expanduser() / f'v{VERSION}'


def clip_path(clip: Clip, cache: str | os.PathLike | None = None) -> Path:
    """Where the rendered WAV of `clip` lies in the cache."""
    return cache_dir(cache) / f'{clip.id}.wav'


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_bytes(data)
    os.replace(tmp, path)


def render_to_cache(clip: Clip, cache: str | os.PathLike | None = None) -> Path:
    """Render `clip` and write it into the cache; return its path."""
    pcm, _ = render(clip)
    path = clip_path(clip, cache)
    _write_atomic(path, wav_bytes(pcm))
    return path


def load(clip: Clip, cache: str | os.PathLike | None = None, *,
         render_missing: bool = True) -> np.ndarray:
    """The clip's samples (float32, 16 kHz), checked against the manifest's sha256.

    A missing file is rendered first (when `render_missing`). Raises ClipError naming the file
    for a missing, truncated, corrupted or unreadable clip.
    """
    import soundfile as sf
    path = clip_path(clip, cache)
    if not path.is_file():
        if not render_missing:
            raise ClipError(clip.id, path, 'not rendered: run `python -m wallie_eval.dataset '
                            'render`')
        try:
            render_to_cache(clip, cache)
        except Exception as exc:   # a missing voice or program: this clip only
            raise ClipError(clip.id, path, f'cannot render: {exc}') from None
    data = path.read_bytes()
    if clip.bytes and len(data) != clip.bytes:
        raise ClipError(clip.id, path, f'{len(data)} bytes, the manifest says {clip.bytes} '
                        '(truncated or corrupted): delete it to render it again')
    digest = hashlib.sha256(data).hexdigest()
    if clip.sha256 and digest != clip.sha256:
        raise ClipError(clip.id, path, f'sha256 {digest[:12]}... differs from the manifest '
                        f'({clip.sha256[:12]}...): corrupted, or rendered by another espeak-ng '
                        '/ Piper version; delete it to render it again')
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype='float32')
    except Exception as exc:
        raise ClipError(clip.id, path, f'unreadable WAV: {exc}') from None
    if rate != RATE or samples.ndim != 1 or not samples.size:
        raise ClipError(clip.id, path, f'expected 16 kHz mono audio, got {rate} Hz, '
                        f'shape {samples.shape}')
    return samples


# --------------------------------------------------------------------------- manifest
@dataclass
class EvalSet:
    """The clips of the evaluation set and the manifest's other fields."""

    clips: list[Clip]
    meta: dict[str, Any] = field(default_factory=dict)

    def select(self, split: str | None = None, limit: int | None = None,
               voices: Sequence[str] = (), every: int = 1) -> list[Clip]:
        """Clips of one half (None: both); `every`: the questions (whole conversations) whose
        key hashes to 0 modulo N, in every voice they are rendered in (a bounded subset that
        keeps every voice and condition); `limit`: at most that many conversations."""
        convs: dict[str, list[Clip]] = {}
        for c in self.clips:
            if split and c.split != split:
                continue
            if voices and c.voice not in voices:
                continue
            convs.setdefault(c.conversation, []).append(c)
        groups = [g for g in convs.values()
                  if every <= 1 or zlib.crc32(g[0].conversation.split('.')[0].encode())
                  % every == 0]
        if limit is not None:
            groups = groups[:limit]
        return [c for g in groups for c in g]


def load_set(path: str | os.PathLike | None = None) -> EvalSet:
    """Read the manifest (default: the committed one); ClipError if it cannot be read."""
    p = Path(path) if path else MANIFEST
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ClipError('manifest', p, f'cannot read the evaluation manifest: {exc}') from None
    clips = [Clip.from_dict(d) for d in data.get('clips', [])]
    return EvalSet(clips, {k: v for k, v in data.items() if k != 'clips'})


def tool_versions() -> dict[str, str]:
    """Versions of espeak-ng and the Python packages that render the clips ('missing' for an
    absent one)."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version
    out: dict[str, str] = {}
    try:
        out['espeak-ng'] = subprocess.run(['espeak-ng', '--version'], capture_output=True,
                                          text=True).stdout.split(':')[1].split()[0]
    except (OSError, IndexError):
        out['espeak-ng'] = 'missing'
    for pkg in ('piper-tts', 'pyroomacoustics', 'numpy', 'scipy', 'onnxruntime'):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = 'missing'
    return out


def build_manifest(out: Path = MANIFEST, cache: str | os.PathLike | None = None,
                   echo=print) -> EvalSet:
    """Render every clip into the cache and write the manifest with sizes and sha256."""
    clips = []
    todo = specs()
    for i, spec in enumerate(todo, 1):
        pcm, bounds = render(spec)
        data = wav_bytes(pcm)
        _write_atomic(clip_path(spec, cache), data)
        clip = Clip(**{**asdict(spec), **bounds, 'sha256': hashlib.sha256(data).hexdigest(),
                       'bytes': len(data)})
        clips.append(clip)
        if i % 25 == 0 or i == len(todo):
            echo(f'[{i}/{len(todo)}] {clip.id}')
    meta = {
        'generator': 'python -m wallie_eval.dataset manifest', 'version': VERSION,
        'sample_rate': RATE, 'tools': tool_versions(),
        'questions': len(qs.QUESTIONS), 'voices': [asdict(v) for v in vx.VOICES],
        'clip_count': len(clips), 'total_bytes': sum(c.bytes for c in clips),
    }
    head = json.dumps(meta, indent=1)[:-2]           # one line per clip keeps diffs readable
    lines = ',\n'.join('  ' + json.dumps(c.to_dict(), separators=(',', ':')) for c in clips)
    out.write_text(f'{head},\n "clips": [\n{lines}\n ]\n}}\n')
    return EvalSet(clips, meta)


def verify(clips: Iterable[Clip], cache: str | os.PathLike | None = None,
           render_missing: bool = False) -> list[ClipError]:
    """The ClipErrors of the clips that are missing, truncated or corrupted in the cache
    (missing ones rendered first if `render_missing`)."""
    errors = []
    for c in clips:
        try:
            load(c, cache, render_missing=render_missing)
        except ClipError as exc:
            errors.append(exc)
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m wallie_eval.dataset`: build the manifest, render, verify or
    list the clips; return 1 if a clip is bad."""
    parser = argparse.ArgumentParser(description='The spoken QA evaluation set.')
    parser.add_argument('action', choices=('manifest', 'render', 'verify', 'list'))
    parser.add_argument('--cache', default=None, help='cache root (default ~/.cache/wallie)')
    args = parser.parse_args(argv)
    if args.action == 'manifest':
        s = build_manifest(cache=args.cache)
        print(f'{len(s.clips)} clips, {s.meta["total_bytes"] / 1e6:.1f} MB in '
              f'{cache_dir(args.cache)}; manifest {MANIFEST}')
        return 0
    s = load_set()
    if args.action == 'list':
        for c in s.clips:
            print(f'{c.id:<40} {c.split:<8} {c.voice:<30} {c.speed:.2f} {c.condition:<12} '
                  f'{c.text}')
        return 0
    errors = verify(s.clips, args.cache, render_missing=args.action == 'render')
    for e in errors:
        print(f'error: {e}', file=sys.stderr)
    print(f'{len(s.clips) - len(errors)}/{len(s.clips)} clips OK in {cache_dir(args.cache)}')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
