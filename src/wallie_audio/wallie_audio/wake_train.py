"""Train a wake word classifier on synthetic speech (no GPU, no hub, no recordings needed).

    python -m wallie_audio.wake_train --word wallie --out wallie.npz      # the shipped model
    python -m wallie_audio.wake_train --word "hey robot"                   # any other word

Positives: the word alone, after a sentence, and followed by a question (in one breath or
after a pause), in the TRAIN voices of `wake_data` (espeak-ng accents and variants, Piper
joe), at several speeds, close or 1-3 m away in simulated rooms, with noise at 3-25 dB SNR.
Negatives: other sentences in the same voices, words that sound close, music, babble, noise.
Labels come from the known end of the word: windows ending 0-240 ms after it are positive,
windows around it are left out, all others are negative. The model is a small MLP
(scikit-learn) saved as plain arrays (`wake_model.Classifier`).

`enroll_text` / `enroll_recordings` run the same fit with fewer samples (about a minute on
2 cores); the generic negatives are cached in ~/.cache/wallie/wake_negatives.npz.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from wallie_audio import synthetic as S
from wallie_audio import wake_data as D
from wallie_audio import wake_model
from wallie_audio.wake_model import (
    CHUNK,
    RATE,
    Classifier,
    FrontEnd,
    slug,
)

WINDOW = 16
POS_AFTER = int(0.24 * RATE)        # windows ending up to this long after the word: positive
IGNORE_BEFORE = int(0.32 * RATE)    # ... and this long before it: left out (partial word)
IGNORE_AFTER = int(1.0 * RATE)      # ... and this long after it: left out (word in view)
NEG_CLIPS = 300                     # clips of the generic negative set (enrollment)
TEXT_CLIPS = 160                    # synthesized positives of a word enrolled from its text
RECORDING_COPIES = 40               # augmented copies of each enrollment recording
NEG_CACHE = Path(os.environ.get('WALLIE_CACHE_DIR', '~/.cache/wallie')).expanduser() / \
    'wake_negatives.npz'


# --------------------------------------------------------------------------- samples

def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _conditions(rng: np.random.Generator) -> tuple[float | None, str | None, float]:
    distance = _pick(rng, (None, 1.0, 1.0, 3.0))
    kind = _pick(rng, (None,) + D.NOISES)
    return distance, kind, float(rng.uniform(3.0, 25.0))


def positive_clip(i: int, phrases: Sequence[str], voices: Sequence[str],
                  seed: int) -> D.Clip:
    """Training positive `i` (seeded): a wake phrase, sometimes after a sentence or before a
    question, in a random voice, room and noise."""
    rng = S.rng_for('pos', seed, i)
    voice = 'piper:joe' if rng.random() < 0.15 and 'piper:joe' in voices else _pick(rng, voices)
    speed = float(_pick(rng, (0.85, 1.0, 1.15)))
    question = _pick(rng, D.QUESTIONS) if rng.random() < 0.7 else None
    before = D.sentences(1, seed * 1000 + i)[0] if rng.random() < 0.2 else None
    gap = 0.0 if rng.random() < 0.4 else float(rng.uniform(0.05, 0.8))
    c = D.wake_clip(_pick(rng, phrases), voice, question, gap, speed, seed=i % 3,
                    lead_s=float(rng.uniform(0.2, 1.2)), before=before)
    distance, kind, snr = _conditions(rng)
    return D.degrade(c, distance, kind, snr, seed * 7919 + i)


def negative_clip(i: int, voices: Sequence[str], seed: int) -> D.Clip:
    """Training negative `i` (seeded): sentences, a word that sounds close, or
    music/babble/noise, in a random voice, room and noise."""
    rng = S.rng_for('neg', seed, i)
    r = rng.random()
    voice = 'piper:joe' if rng.random() < 0.15 and 'piper:joe' in voices else _pick(rng, voices)
    speed = float(_pick(rng, (0.85, 1.0, 1.15)))
    if r < 0.55:
        text = ' '.join(D.sentences(int(rng.integers(1, 3)), seed * 100003 + i))
        c = D.speech_clip(text, voice, speed, i % 3)
    elif r < 0.85:
        c = D.speech_clip(D.near_texts(seed * 100003 + i, 1)[0], voice, speed, i % 3, 'near')
    else:
        c = D.noise_clip(_pick(rng, ('music', 'music', 'babble', 'babble', 'pink', 'hum')),
                         float(rng.uniform(3, 8)), seed * 31 + i)
    distance, kind, snr = _conditions(rng)
    return D.degrade(c, distance, kind, snr, seed * 7919 + i)


# --------------------------------------------------------------------------- windows

def windows(front: FrontEnd, clip: D.Clip, window: int = WINDOW,
            neg_stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """All classifier windows of a clip and their labels (1, 0; ignored ones dropped)."""
    emb = front.clip(clip.audio)
    sil = front.silence_embedding()
    pad = np.concatenate([np.repeat(sil[None], window - 1, axis=0), emb])
    ends = (np.arange(emb.shape[0]) + 1) * CHUNK
    labels = np.zeros(emb.shape[0], np.int8)
    for w in clip.wake_ends:
        d = ends - w
        labels[(d > -IGNORE_BEFORE) & (d < IGNORE_AFTER)] = -1
        labels[(d >= 0) & (d <= POS_AFTER)] = 1
    keep = np.nonzero(labels >= 0)[0]
    if neg_stride > 1:
        keep = keep[(labels[keep] == 1) | (keep % neg_stride == 0)]
    X = np.stack([pad[k:k + window] for k in keep]) if keep.size else \
        np.zeros((0, window, emb.shape[1]), np.float32)
    return X.astype(np.float16), labels[keep]


_FRONT: FrontEnd | None = None


def _worker(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    global _FRONT
    if _FRONT is None:
        _FRONT = FrontEnd(Path(job[0]))
    kind, i, arg, seed = job[1:]
    clip = positive_clip(i, arg[0], arg[1], seed) if kind == 'pos' else \
        negative_clip(i, arg, seed)
    return windows(_FRONT, clip, neg_stride=1 if kind == 'pos' else 2)


def collect(jobs: list[tuple], workers: int, log: Callable[[str], None]) -> tuple:
    """Generate the clips of `jobs` (on `workers` processes) and return their classifier windows
    and labels, concatenated."""
    Xs, ys = [], []
    t0 = time.monotonic()
    results: Iterable[tuple[np.ndarray, np.ndarray]]
    if workers <= 1:
        results = map(_worker, jobs)
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_worker, jobs, chunksize=8)
    for n, (X, y) in enumerate(results, 1):
        Xs.append(X)
        ys.append(y)
        if n % 200 == 0:
            log(f'  {n}/{len(jobs)} clips ({time.monotonic() - t0:.0f} s)')
    if workers > 1:
        pool.shutdown()
    return np.concatenate(Xs), np.concatenate(ys)


# --------------------------------------------------------------------------- fit

def fit(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, hidden=(64,),
        seed: int = 0, alpha: float = 1e-2, max_iter: int = 25, meta: dict | None = None,
        fa_per_window: float = 2e-5, log: Callable[[str], None] = print) -> Classifier:
    """Fit the MLP; the threshold is the lowest score that keeps the validation negatives'
    false alarms at or below `fa_per_window` (and at least 0.5)."""
    from sklearn.neural_network import MLPClassifier
    Xf = X.reshape(X.shape[0], -1).astype(np.float32)
    mean = Xf.mean(axis=0)
    scale = Xf.std(axis=0) + 1e-3
    Xf = (Xf - mean) / scale
    # balance: repeat positives
    pos = np.nonzero(y == 1)[0]
    reps = max(1, int(0.25 * (y == 0).sum() / max(1, pos.size)))
    idx = np.concatenate([np.arange(y.shape[0])] + [pos] * (reps - 1))
    mlp = MLPClassifier(hidden_layer_sizes=hidden, alpha=alpha, batch_size=512,
                        learning_rate_init=1e-3, max_iter=max_iter, early_stopping=False,
                        random_state=seed, tol=1e-5)
    t0 = time.monotonic()
    mlp.fit(Xf[idx], y[idx])
    log(f'  fit {idx.size} windows in {time.monotonic() - t0:.0f} s')
    c = Classifier([w.astype(np.float32) for w in mlp.coefs_],
                   [b.astype(np.float32) for b in mlp.intercepts_],
                   mean.astype(np.float32), scale.astype(np.float32), X.shape[1], 0.5,
                   dict(meta or {}))
    if Xv.shape[0]:
        sv = c.scores(Xv)
        neg = np.sort(sv[yv == 0])[::-1]
        k = int(fa_per_window * neg.size)
        c.threshold = float(min(0.99, max(0.5, neg[k] + 1e-4 if neg.size > k else 0.5)))
        c.meta['validation'] = {
            'threshold': c.threshold,
            'positive_windows_detected': float(np.mean(sv[yv == 1] >= c.threshold)),
            'negative_windows_over': int(np.sum(neg >= c.threshold)),
            'negative_windows': int(neg.size)}
        log(f"  validation: {c.meta['validation']}")
    return c


# --------------------------------------------------------------------------- models

def train(word: str, n_pos: int, n_neg: int, seed: int, workers: int,
          front_dir: Path, log: Callable[[str], None] = print,
          cache: Path | None = None, hidden: tuple[int, ...] = (64,),
          alpha: float = 1e-2, max_iter: int = 25) -> Classifier:
    """Generate training and validation clips for `word` (or load them from `cache`) and fit its
    classifier."""
    phrases = (D.WAKE_PHRASES if slug(word) == 'wallie'
               else (word, f'hey {word}') if not word.lower().startswith('hey ') else (word,))
    voices = D.train_voices()
    val_voices = voices[5::11]           # a few train voices held back for the threshold
    fit_voices = tuple(v for v in voices if v not in val_voices)
    jobs = ([(str(front_dir), 'pos', i, (phrases, fit_voices), seed) for i in range(n_pos)]
            + [(str(front_dir), 'neg', i, fit_voices, seed) for i in range(n_neg)])
    vjobs = ([(str(front_dir), 'pos', i, (phrases, val_voices), seed + 1)
              for i in range(n_pos // 8)]
             + [(str(front_dir), 'neg', i, val_voices, seed + 1) for i in range(n_neg // 4)])
    log(f'generating {len(jobs)} training clips and {len(vjobs)} validation clips '
        f'({workers} workers)')
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            X, y, Xv, yv = z['X'], z['y'], z['Xv'], z['yv']
        log(f'  windows read from {cache}')
    else:
        X, y = collect(jobs, workers, log)
        Xv, yv = collect(vjobs, workers, log)
        if cache is not None:
            np.savez(cache, X=X, y=y, Xv=Xv, yv=yv)
    log(f'  train windows: {int((y == 1).sum())} positive, {int((y == 0).sum())} negative')
    meta = {'word': word, 'phrases': list(phrases), 'n_pos_clips': n_pos,
            'n_neg_clips': n_neg, 'seed': seed, 'train_voices': list(fit_voices),
            'validation_voices': list(val_voices), 'window': WINDOW,
            'features': 'openWakeWord melspectrogram + embedding_model (oww-features)'}
    meta.update(alpha=alpha, max_iter=max_iter, hidden=list(hidden))
    return fit(X, y, Xv, yv, hidden=hidden, seed=seed, alpha=alpha, max_iter=max_iter,
               meta=meta, log=log)


def _negatives(front: FrontEnd, log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray]:
    """Generic negatives (train voices only), cached on disk."""
    if NEG_CACHE.is_file():
        try:
            with np.load(NEG_CACHE, allow_pickle=False) as z:
                if z['window'] == WINDOW and z['clips'] == NEG_CLIPS:
                    return z['X'], z['y']
        except (OSError, KeyError, ValueError):
            pass
    log('building the generic negative set (once; cached in ' f'{NEG_CACHE})')
    voices = D.train_voices()
    Xs = []
    for i in range(NEG_CLIPS):
        X, _ = windows(front, negative_clip(i, voices, 101), neg_stride=3)
        Xs.append(X)
    X = np.concatenate(Xs)
    y = np.zeros(X.shape[0], np.int8)
    NEG_CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(NEG_CACHE, X=X, y=y, window=np.array(WINDOW),
                        clips=np.array(NEG_CLIPS))
    return X, y


def _fit_small(word: str, pos_clips: list[D.Clip], front: FrontEnd, source: str,
               log: Callable[[str], None]) -> Classifier:
    Xn, yn = _negatives(front, log)
    parts = [windows(front, c, neg_stride=2) for c in pos_clips]
    P = np.concatenate([X[y == 1] for X, y in parts])
    Xn = np.concatenate([Xn] + [X[y == 0] for X, y in parts])
    rng = np.random.default_rng(0)
    order = rng.permutation(P.shape[0])
    nv = max(1, P.shape[0] // 6)
    neg_order = rng.permutation(Xn.shape[0])
    nvn = Xn.shape[0] // 5
    X = np.concatenate([P[order[nv:]], Xn[neg_order[nvn:]]])
    y = np.concatenate([np.ones(P.shape[0] - nv, np.int8), np.zeros(Xn.shape[0] - nvn, np.int8)])
    Xv = np.concatenate([P[order[:nv]], Xn[neg_order[:nvn]]])
    yv = np.concatenate([np.ones(nv, np.int8), np.zeros(nvn, np.int8)])
    return fit(X, y, Xv, yv, hidden=(32,), meta={'word': word, 'source': source},
               fa_per_window=1e-3, log=log)


def enroll_text(word: str, front: FrontEnd | None = None, out: Path | None = None,
                log: Callable[[str], None] = print) -> Path:
    """A model for `word` from its text alone (synthesized in the train voices)."""
    front = front or FrontEnd()
    voices = D.train_voices()
    clips = []
    for i in range(TEXT_CLIPS):
        rng = S.rng_for('enroll', word, i)
        v = voices[(i * 7) % len(voices)]
        q = _pick(rng, D.QUESTIONS) if i % 2 else None
        c = D.wake_clip(word, v, q, 0.0 if i % 4 == 1 else 0.3, float(_pick(rng, (0.85, 1.0,
                        1.15))), seed=i % 3, lead_s=0.5)
        distance, kind, snr = _conditions(rng)
        clips.append(D.degrade(c, distance, kind, snr, i))
    model = _fit_small(word, clips, front, 'text', log)
    path = out or wake_model.WAKE_WORD_DIR / f'{slug(word)}.npz'
    sha = model.save(path)
    log(f'wrote {path} (sha256 {sha})')
    return path


def enroll_recordings(word: str, recordings: Sequence[np.ndarray],
                      front: FrontEnd | None = None, out: Path | None = None,
                      log: Callable[[str], None] = print) -> Path:
    """A model for `word` from a few recordings of it (float32 16 kHz; the word alone)."""
    import soxr
    if len(recordings) < 3:
        raise ValueError(f'enrollment needs 3 recordings of the word, got {len(recordings)}')
    front = front or FrontEnd()
    clips = []
    for r, rec in enumerate(recordings):
        x = S.trim(np.asarray(rec, np.float32), -35.0)
        if x.shape[0] < int(0.15 * RATE) or x.shape[0] > 3 * RATE:
            raise ValueError(f'recording {r + 1}: {x.shape[0] / RATE:.2f} s of speech; say '
                             'the word alone, 0.15-3 s')
        x = x * (0.5 / (float(np.max(np.abs(x))) or 1.0))
        for k in range(RECORDING_COPIES):
            rng = S.rng_for('rec', word, r, k)
            speed = float(rng.uniform(0.88, 1.12))
            y = soxr.resample(x, RATE, int(RATE * speed)).astype(np.float32)
            lead = np.zeros(int(rng.uniform(0.3, 1.0) * RATE), np.float32)
            tail = np.zeros(int(0.8 * RATE), np.float32)
            c = D.Clip(np.concatenate([lead, y, tail]), [lead.shape[0] + y.shape[0]],
                       [lead.shape[0]], word, 'recording', 'positive')
            distance, kind, snr = _conditions(rng)
            clips.append(D.degrade(c, distance, kind, snr, r * 100 + k))
    model = _fit_small(word, clips, front, 'recordings', log)
    path = out or wake_model.WAKE_WORD_DIR / f'{slug(word)}.npz'
    sha = model.save(path)
    log(f'wrote {path} (sha256 {sha})')
    return path


def main(argv: list[str] | None = None) -> int:
    """Train a wake word model from the command line and save it; return the exit status (2 if a
    synthesizer is missing)."""
    ap = argparse.ArgumentParser(prog='python -m wallie_audio.wake_train', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--word', default='wallie')
    ap.add_argument('--out', type=Path, default=None)
    ap.add_argument('--positives', type=int, default=2400)
    ap.add_argument('--negatives', type=int, default=2400)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--hidden', default='64', help='hidden layer sizes, e.g. 64 or 96,32')
    ap.add_argument('--alpha', type=float, default=1e-2, help='L2 penalty of the MLP')
    ap.add_argument('--epochs', type=int, default=25)
    ap.add_argument('--cache', type=Path, default=None,
                    help='keep the generated windows in this .npz (refit without regenerating)')
    ap.add_argument('--features', type=Path, default=None,
                    help='directory with melspectrogram.onnx and embedding_model.onnx '
                         '(default: the model store oww-features)')
    a = ap.parse_args(argv)
    from wallie_audio.wake_model import features_dir
    missing = D.have_tools(D.train_voices())
    if missing:
        print(f'missing: {missing} (apt-get install -y {" ".join(missing)})', file=sys.stderr)
        return 2
    fdir = a.features or features_dir()
    t0 = time.monotonic()
    hidden = tuple(int(h) for h in a.hidden.split(','))
    c = train(a.word, a.positives, a.negatives, a.seed, a.workers, fdir, cache=a.cache,
              hidden=hidden, alpha=a.alpha, max_iter=a.epochs)
    c.meta['train_seconds'] = round(time.monotonic() - t0)
    out = a.out or wake_model.WAKE_WORD_DIR / f'{slug(a.word)}.npz'
    sha = c.save(out)
    size = out.stat().st_size
    print(json.dumps({'path': str(out), 'size': size, 'sha256': sha,
                      'threshold': c.threshold, 'validation': c.meta.get('validation')}))
    assert sha == hashlib.sha256(out.read_bytes()).hexdigest()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
