"""An acoustic keyword spotter on openWakeWord's speech embeddings, for any word.

Pure Python (no ROS). Two parts:
- :class:`FrontEnd`: openWakeWord's feature models (melspectrogram.onnx -> 32 log-mel bins
  every 10 ms; Google's speech_embedding re-implemented as embedding_model.onnx -> one
  96-dim embedding per 80 ms from the last 76 mel frames), run with onnxruntime directly.
  `stream` (live, 80 ms chunks) and `clip` (a whole clip, batched) give identical frames.
- :class:`Classifier`: a small MLP over the last `window` embeddings (scikit-learn at
  training time, numpy at run time), stored as an .npz of plain arrays (no pickle).

:class:`EmbeddingWake` is the wake engine (`wake.engine:=embedding`): "wallie" comes from the
model store (`wake-wallie`); any other word is a model enrolled from its text or from three
recordings (`wallie_audio.wake_train`), kept in ~/.wallie_voice_bot/wake_words/.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16000
CHUNK = 1280                 # 80 ms: one embedding per chunk
MEL_CONTEXT = 480            # extra samples before each chunk for the mel frames
MEL_PER_CHUNK = 8
EMB_MEL_FRAMES = 76
EMB_DIM = 96
FEATURES_ID = 'oww-features'
WALLIE_ID = 'wake-wallie'
WAKE_WORD_DIR = Path('~/.wallie_voice_bot/wake_words').expanduser()


def slug(word: str) -> str:
    """File-name form of a wake word: 'Hey Robot!' -> 'hey_robot'."""
    s = re.sub(r'[^a-z0-9]+', '_', word.lower()).strip('_')
    if not s:
        raise ValueError(f'wake word {word!r} has no letters or digits')
    return s


def _session(path: Path, threads: int = 1):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return ort.InferenceSession(str(path), sess_options=opts,
                                providers=['CPUExecutionProvider'])


def features_dir(store: str | None = None) -> Path:
    """The store directory of openWakeWord's feature models, every file's sha256 checked."""
    from wallie_common import model_store
    return model_store.resolve_verified(FEATURES_ID, store=store)


class FrontEnd:
    """Log-mel + speech embedding, streaming or batched; state starts from silence."""

    def __init__(self, model_dir: Path | None = None, threads: int = 1) -> None:
        d = Path(model_dir) if model_dir is not None else features_dir()
        self._mel = _session(d / 'melspectrogram.onnx', threads)
        self._emb = _session(d / 'embedding_model.onnx', threads)
        self.silence_mel = self._mel_frames(np.zeros((1, MEL_CONTEXT + CHUNK), np.float32))[0, 0]
        self.reset()

    def _mel_frames(self, x: np.ndarray) -> np.ndarray:
        """(n, 1760) int16-scaled float32 -> (n, 8, 32) transformed mel frames.

        One window per call: the model clips its dB range against the maximum of the whole
        input, so a batch would change the frames (streaming computes one chunk at a time)."""
        out = [self._mel.run(None, {'input': x[i:i + 1]})[0][0, 0] for i in range(x.shape[0])]
        return np.stack(out) / 10.0 + 2.0

    def _embed(self, windows: np.ndarray) -> np.ndarray:
        """(n, 76, 32) -> (n, 96)."""
        out = self._emb.run(None, {'input_1': windows[..., None].astype(np.float32)})[0]
        return out.reshape(out.shape[0], EMB_DIM)

    def reset(self) -> None:
        self._tail = np.zeros(MEL_CONTEXT, np.float32)
        self._mels = np.repeat(self.silence_mel[None], EMB_MEL_FRAMES, axis=0)
        self._rest = np.zeros(0, np.float32)

    def stream(self, samples: np.ndarray) -> np.ndarray:
        """Feed int16-scale float32 samples; returns the new embeddings (k, 96), one per
        completed 80 ms chunk."""
        x = np.concatenate([self._rest, samples.astype(np.float32)])
        n = x.shape[0] // CHUNK
        self._rest = x[n * CHUNK:]
        if n == 0:
            return np.zeros((0, EMB_DIM), np.float32)
        full = np.concatenate([self._tail, x[: n * CHUNK]])
        self._tail = full[-MEL_CONTEXT:]
        wins = np.stack([full[c * CHUNK: c * CHUNK + MEL_CONTEXT + CHUNK] for c in range(n)])
        mels = self._mel_frames(wins).reshape(n * MEL_PER_CHUNK, -1)
        allm = np.concatenate([self._mels, mels])
        self._mels = allm[-EMB_MEL_FRAMES:]
        ends = [allm.shape[0] - (n - 1 - c) * MEL_PER_CHUNK for c in range(n)]
        return self._embed(np.stack([allm[e - EMB_MEL_FRAMES:e] for e in ends]))

    def clip(self, audio: np.ndarray, batch: int = 256) -> np.ndarray:
        """Embeddings of a whole float32 [-1, 1] clip from a silent start, as `stream` would
        give them: row c ends at sample (c + 1) * CHUNK."""
        x = np.asarray(audio, np.float32) * 32767.0
        n = x.shape[0] // CHUNK
        if n == 0:
            return np.zeros((0, EMB_DIM), np.float32)
        full = np.concatenate([np.zeros(MEL_CONTEXT, np.float32), x[: n * CHUNK]])
        wins = np.stack([full[c * CHUNK: c * CHUNK + MEL_CONTEXT + CHUNK] for c in range(n)])
        mels = self._mel_frames(wins).reshape(n * MEL_PER_CHUNK, -1)
        allm = np.concatenate([np.repeat(self.silence_mel[None], EMB_MEL_FRAMES, axis=0), mels])
        ends = [EMB_MEL_FRAMES + (c + 1) * MEL_PER_CHUNK for c in range(n)]
        wins_e = np.stack([allm[e - EMB_MEL_FRAMES:e] for e in ends])
        return np.concatenate([self._embed(wins_e[i:i + batch])
                               for i in range(0, n, batch)])

    def silence_embedding(self) -> np.ndarray:
        m = np.repeat(self.silence_mel[None], EMB_MEL_FRAMES, axis=0)
        return self._embed(m[None])[0]


@dataclass
class Classifier:
    """MLP over `window` embeddings (flattened, standardised): relu hidden layers,
    logistic output."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    mean: np.ndarray
    scale: np.ndarray
    window: int
    threshold: float
    meta: dict

    def scores(self, windows: np.ndarray) -> np.ndarray:
        """(n, window, 96) or (n, window*96) -> (n,) probabilities."""
        h = windows.reshape(windows.shape[0], -1).astype(np.float32)
        h = (h - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                np.maximum(h, 0.0, out=h)
        return 1.0 / (1.0 + np.exp(-h[:, 0]))

    def save(self, path: Path) -> str:
        """Write the .npz; returns its sha256."""
        arrays: dict[str, np.ndarray] = {
            'mean': self.mean.astype(np.float32), 'scale': self.scale.astype(np.float32),
            'window': np.array(self.window), 'threshold': np.array(self.threshold),
            'meta': np.array(json.dumps(self.meta, sort_keys=True))}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f'w{i}'] = w.astype(np.float32)
            arrays[f'b{i}'] = b.astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, 'wb') as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
        return hashlib.sha256(path.read_bytes()).hexdigest()

    @classmethod
    def load(cls, path: Path) -> 'Classifier':
        try:
            with np.load(path, allow_pickle=False) as z:
                n = sum(1 for k in z.files if re.fullmatch(r'w\d+', k))
                return cls([z[f'w{i}'] for i in range(n)], [z[f'b{i}'] for i in range(n)],
                           z['mean'], z['scale'], int(z['window']), float(z['threshold']),
                           json.loads(str(z['meta'])))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f'{path} is not a wake word model ({exc})') from exc


def model_path(word: str, store: str | None = None) -> Path:
    """The classifier file for `word`: the store's wake-wallie for "wallie" (sha256
    checked), else ~/.wallie_voice_bot/wake_words/<slug>.npz or an explicit .npz path."""
    p = Path(word).expanduser()
    if p.suffix == '.npz':
        if not p.is_file():
            raise FileNotFoundError(f'wake word model {p} does not exist')
        return p
    s = slug(word)
    if s in ('wallie', 'hey_wallie'):
        from wallie_common import model_store
        d = model_store.resolve_verified(WALLIE_ID, store=store)
        return d / 'wallie.npz'
    return WAKE_WORD_DIR / f'{s}.npz'


class EmbeddingWake:
    """Wake engine: FrontEnd + Classifier per word; fires when a score reaches the
    threshold, then stays quiet for `refractory_ms`."""

    name = 'embedding'
    acoustic = True

    def __init__(self, words: list[str], sensitivity: float = 0.5,
                 refractory_ms: int = 1500, store: str | None = None,
                 front: FrontEnd | None = None,
                 classifiers: dict[str, Classifier] | None = None) -> None:
        self.front = front or FrontEnd(features_dir(store))
        if classifiers is None:
            classifiers = {}
            for w in words:
                path = model_path(w, store)
                if not path.is_file():
                    from wallie_audio.wake_train import enroll_text
                    enroll_text(w, front=self.front)
                classifiers[slug(Path(w).stem if w.endswith('.npz') else w)] = \
                    Classifier.load(path)
        self.classifiers = classifiers
        self.keywords = list(classifiers)
        self.window = max(c.window for c in classifiers.values())
        self.sensitivity = sensitivity
        self._refractory = int(refractory_ms * RATE / 1000)
        self.reset()

    def set_sensitivity(self, sensitivity: float) -> None:
        self.sensitivity = sensitivity

    def threshold(self, c: Classifier) -> float:
        """Sensitivity 0.5 = the model's own threshold; 0 stricter, 1 more eager."""
        t = c.threshold
        s = float(min(1.0, max(0.0, self.sensitivity)))
        return t + (1.0 - t) * 0.9 * (0.5 - s) * 2 if s < 0.5 else t * (1.0 - (s - 0.5) * 1.6)

    def reset(self) -> None:
        self.front.reset()
        sil = self.front.silence_embedding()
        self._emb = np.repeat(sil[None], self.window, axis=0).astype(np.float32)
        self._since_hit = 10 ** 9
        self.last_scores: dict[str, float] = {}

    def process(self, block: np.ndarray):
        from wallie_audio.wake import WakeHit
        new = self.front.stream(np.asarray(block, np.float32) * 32767.0)
        self._since_hit += block.shape[0]
        hit = None
        pending = self.front._rest.shape[0]
        for i in range(new.shape[0]):
            self._emb = np.concatenate([self._emb[1:], new[i:i + 1]])
            for word, c in self.classifiers.items():
                score = float(c.scores(self._emb[None, -c.window:])[0])
                self.last_scores[word] = score
                if score >= self.threshold(c) and self._since_hit >= self._refractory \
                        and hit is None:
                    after = (new.shape[0] - 1 - i) * CHUNK + pending
                    hit = WakeHit(word, score, self.name, after)
                    self._since_hit = after
        return hit
