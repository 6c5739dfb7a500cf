"""Whisper ASR engine: faster-whisper (CTranslate2) with hallucination guards and a compute ladder.

Pure Python (no ROS imports). The node turns parameters into an EngineConfig and calls
:meth:`WhisperEngine.transcribe` from its worker thread.

Speed: Whisper is trained on 30 s windows, and faster-whisper always encodes 30 s, so every call
costs the same (~0.4 s for tiny.en on 2 cores) however short the utterance. CTranslate2 accepts a
shorter mel window; a 15 s window costs about a quarter of the 30 s one and measured no worse
on our fixtures (WER 0.085 vs 0.107 on 36 espeak-ng utterances), a 10 s window another ~27 %
less (3.3 s question: 218 -> 160 ms; WER 0.055 vs 0.060 on the bench's 24 clips), while
windows shorter than ~10 s make the decoder loop ("what is the capital of France? what
is ..."). So the engine encodes ``max(window_s, audio + 1 s)`` (at most 30 s, default
window_s 10) and caps the tokens per second of audio.

Compute ladder: a failed CUDA init or a CUDA out-of-memory (at load or while decoding) steps
down float16 -> int8_float16 -> int8 -> CPU int8 instead of failing; every step is recorded in
:attr:`WhisperEngine.events` for logs and diagnostics.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np

from wallie_asr.config import COMPUTE_TYPES, DEVICES, SAMPLE_RATE, EngineConfig

_LOG = logging.getLogger('wallie_asr.engine')

WHISPER_MAX_FRAMES = 3000          # 30 s of 10 ms mel frames
WHISPER_MAX_TOKENS = 448
WINDOW_MARGIN_S = 1.0              # silence after the audio inside the encoder window
GPU_LADDER = ('float16', 'int8_float16', 'int8')


class EngineError(RuntimeError):
    """The engine cannot run (every rung of the ladder failed, or it is closed)."""


@dataclass(frozen=True)
class DecodeRequest:
    """What one decode needs besides the audio."""

    language: str                 # a code, or 'auto'
    beam_size: int
    initial_prompt: str
    hotwords: str
    window_s: float
    max_tokens_per_s: float


@dataclass(frozen=True)
class RawDecode:
    """What the backend recognised, before the guards."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    language: str
    language_prob: float = 1.0
    n_tokens: int = 0
    hit_max_length: bool = False
    window_s: float = 0.0


class Backend(Protocol):
    """The library boundary: one loaded model on one device with one compute type."""

    multilingual: bool

    def decode(self, audio: np.ndarray, request: DecodeRequest) -> RawDecode:
        ...

    def close(self) -> None:
        ...


BackendFactory = Callable[[Path, str, str, int], Backend]


@dataclass(frozen=True)
class AsrResult:
    """One transcription. `text` is empty when a guard rejected it (`rejected` says why)."""

    text: str
    confidence: float = 0.0
    language: str = ''
    no_speech_prob: float = 1.0
    avg_logprob: float = float('-inf')
    compression_ratio: float = 0.0
    rejected: Optional[str] = None
    raw_text: str = ''
    audio_s: float = 0.0
    processing_ms: float = 0.0
    window_s: float = 0.0


@dataclass(frozen=True)
class Rung:
    """One (device, compute type) step of the ladder."""

    device: str
    compute_type: str

    def __str__(self) -> str:
        return f'{self.device}/{self.compute_type}'


@dataclass
class LoadReport:
    """What loading did: the rung that worked, the failures before it, the times."""

    rung: Rung
    failures: list[str] = field(default_factory=list)
    load_s: float = 0.0
    warmup_s: float = 0.0

    @property
    def degraded(self) -> bool:
        return bool(self.failures)


# --------------------------------------------------------------------------- helpers


def compression_ratio(text: str) -> float:
    """zlib compression ratio of the text (Whisper's repetition measure)."""
    data = text.encode('utf-8')
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


_NON_WORD = re.compile(r"[^\w']+", re.UNICODE)
_ANNOTATION = re.compile(r'\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|[♪♫]+')


def normalize_text(text: str) -> str:
    """Lowercase, punctuation to spaces, collapsed whitespace (for phrase comparisons)."""
    return ' '.join(_NON_WORD.sub(' ', text.lower().replace("'", ' ')).split())


def strip_annotations(text: str) -> str:
    """Remove '[Music]', '(upbeat music)', '*laughs*' and music notes."""
    return ' '.join(_ANNOTATION.sub(' ', text).split())


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level of float samples in dB relative to full scale (-inf for digital silence)."""
    if audio.size == 0:
        return float('-inf')
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 0 else float('-inf')


def resample_to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """Resample mono float32 audio to 16 kHz (soxr when available, else linear)."""
    if rate == SAMPLE_RATE or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    try:
        import soxr
        return np.asarray(soxr.resample(audio, rate, SAMPLE_RATE), dtype=np.float32)
    except ImportError:  # pragma: no cover - soxr is a runtime requirement
        n = int(round(audio.size * SAMPLE_RATE / rate))
        x = np.linspace(0.0, audio.size - 1, n)
        return np.interp(x, np.arange(audio.size), audio).astype(np.float32)


def validate_audio(audio: np.ndarray, max_s: float) -> np.ndarray:
    """Return mono float32 audio in [-1, 1]; raise ValueError for unusable input."""
    arr = np.asarray(audio)
    if arr.ndim != 1:
        raise ValueError(f'audio must be mono (1-D), got shape {arr.shape}')
    if arr.dtype == np.int16:
        arr = arr.astype(np.float32) * (1.0 / 32768.0)
    elif arr.dtype.kind != 'f':
        raise ValueError(f'audio dtype {arr.dtype} is not int16 or float')
    arr = arr.astype(np.float32, copy=False)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError('audio contains NaN or infinite samples')
    if arr.size > max_s * SAMPLE_RATE:
        raise ValueError(f'audio of {arr.size / SAMPLE_RATE:.1f} s is longer than the '
                         f'limit {max_s:.0f} s')
    return np.clip(arr, -1.0, 1.0)


def is_gpu_failure(exc: BaseException) -> bool:
    """True for the errors a CUDA device raises when it is out of memory or unusable."""
    text = f'{type(exc).__name__}: {exc}'.lower()
    return any(k in text for k in ('cuda', 'out of memory', 'cublas', 'cudnn', 'gpu',
                                   'not support efficient', 'no cuda'))


def cuda_device_count() -> int:
    """Number of CUDA devices CTranslate2 can use (0 without the library or a GPU)."""
    try:
        import ctranslate2
        return int(ctranslate2.get_cuda_device_count())
    except Exception:
        return 0


def compute_ladder(device: str, compute_type: str, cuda_devices: Optional[int] = None
                   ) -> list[Rung]:
    """The rungs to try, best first, for a requested device and compute type.

    GPU: the requested type, then the lower ones of float16 -> int8_float16 -> int8, then CPU
    int8. CPU: the requested type, then int8 (CPU has no efficient float16).
    """
    if device not in DEVICES:
        raise ValueError(f'device {device!r} is not one of {DEVICES}')
    if compute_type not in COMPUTE_TYPES:
        raise ValueError(f'compute type {compute_type!r} is not one of {COMPUTE_TYPES}')
    if device == 'auto':
        n = cuda_device_count() if cuda_devices is None else cuda_devices
        device = 'cuda' if n > 0 else 'cpu'
    rungs: list[Rung] = []
    if device == 'cuda':
        first = 'float16' if compute_type == 'auto' else compute_type
        rungs.append(Rung('cuda', first))
        below = GPU_LADDER[GPU_LADDER.index(first) + 1:] if first in GPU_LADDER else GPU_LADDER
        rungs += [Rung('cuda', ct) for ct in below]
    else:
        rungs.append(Rung('cpu', 'int8' if compute_type == 'auto' else compute_type))
    rungs.append(Rung('cpu', 'int8'))
    out: list[Rung] = []
    for r in rungs:
        if r not in out:
            out.append(r)
    return out


def resolve_model_path(model: str) -> Path:
    """A path (contains a separator or exists) as is, else a model store id."""
    from wallie_common import model_store
    if os.sep in model or model.startswith(('.', '~')) or Path(model).expanduser().exists():
        return model_store.resolve(Path(model).name, Path(model).expanduser())
    return model_store.resolve(model)


# --------------------------------------------------------------------------- backend


class FasterWhisperBackend:
    """faster-whisper's WhisperModel, decoded with a shortened encoder window."""

    def __init__(self, path: Path, device: str, compute_type: str, cpu_threads: int) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens
        self._model = WhisperModel(str(path), device=device, compute_type=compute_type,
                                   cpu_threads=cpu_threads, num_workers=1,
                                   local_files_only=True)
        self._Tokenizer = Tokenizer
        self.multilingual = bool(self._model.model.is_multilingual)
        self._tokenizers: dict[str, Any] = {}
        base = self._tokenizer('en')
        self._suppress = list(get_suppressed_tokens(base, [-1]))
        self._n_mels = int(self._model.feature_extractor.mel_filters.shape[0])

    def _tokenizer(self, language: str) -> Any:
        key = language if self.multilingual else 'en'
        if key not in self._tokenizers:
            self._tokenizers[key] = self._Tokenizer(
                self._model.hf_tokenizer, self.multilingual, task='transcribe',
                language=key if self.multilingual else None)
        return self._tokenizers[key]

    def decode(self, audio: np.ndarray, request: DecodeRequest) -> RawDecode:
        import ctranslate2
        feats = self._model.feature_extractor(audio)
        n = feats.shape[-1]
        frames = int(min(WHISPER_MAX_FRAMES,
                         max(request.window_s * 100, n + WINDOW_MARGIN_S * 100)))
        if n < frames:
            feats = np.pad(feats, ((0, 0), (0, frames - n)))
        feats = np.ascontiguousarray(feats[:, :frames][None], dtype=np.float32)
        enc = self._model.model.encode(ctranslate2.StorageView.from_array(feats))
        language, language_prob = 'en', 1.0
        if self.multilingual:
            if request.language in ('', 'auto'):
                top = self._model.model.detect_language(enc)[0][0]
                language, language_prob = top[0][2:-2], float(top[1])
            else:
                language = request.language
        tok = self._tokenizer(language)
        previous = tok.encode(' ' + request.initial_prompt.strip()) \
            if request.initial_prompt.strip() else []
        prompt = self._model.get_prompt(tok, previous, without_timestamps=True,
                                        hotwords=request.hotwords.strip() or None)
        budget = int(request.max_tokens_per_s * audio.size / SAMPLE_RATE) + 16
        max_length = min(WHISPER_MAX_TOKENS, len(prompt) + budget)
        result = self._model.model.generate(
            enc, [prompt], beam_size=max(1, request.beam_size), return_scores=True,
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=self._suppress,
            max_length=max_length)[0]
        tokens = result.sequences_ids[0]
        score = float(result.scores[0]) if result.scores else float('-inf')
        avg_logprob = score * len(tokens) / (len(tokens) + 1)
        return RawDecode(text=tok.decode(tokens).strip(), avg_logprob=avg_logprob,
                         no_speech_prob=float(result.no_speech_prob), language=language,
                         language_prob=language_prob, n_tokens=len(tokens),
                         hit_max_length=len(prompt) + len(tokens) >= max_length,
                         window_s=frames / 100.0)

    def close(self) -> None:
        model = getattr(self, '_model', None)
        if model is not None:
            try:
                model.model.unload_model()
            except Exception:  # older CTranslate2, or already unloaded
                pass
        self._model = None


def faster_whisper_backend(path: Path, device: str, compute_type: str,
                           cpu_threads: int) -> Backend:
    """The default BackendFactory."""
    return FasterWhisperBackend(path, device, compute_type, cpu_threads)


# --------------------------------------------------------------------------- engine


class WhisperEngine:
    """A loaded Whisper model with guards; one transcription at a time (thread-safe)."""

    def __init__(self, config: EngineConfig, model_path: Optional[Path] = None,
                 factory: BackendFactory = faster_whisper_backend,
                 cuda_devices: Optional[int] = None) -> None:
        self.config = config
        self.model_path = model_path
        self._factory = factory
        self._cuda_devices = cuda_devices
        self._backend: Optional[Backend] = None
        self._ladder: list[Rung] = []
        self._rung_index = 0
        self._lock = threading.Lock()
        self.report: Optional[LoadReport] = None
        self.events: list[str] = []      # ladder steps, for logs and diagnostics
        self._fillers = frozenset(normalize_text(p) for p in config.filler_phrases)

    def reconfigure(self, config: EngineConfig) -> None:
        """Apply decoding/guard settings live (model, device, compute type need a reload)."""
        self._fillers = frozenset(normalize_text(p) for p in config.filler_phrases)
        self.config = config

    # -- loading ------------------------------------------------------------------------
    @property
    def rung(self) -> Optional[Rung]:
        return self._ladder[self._rung_index] if self._backend is not None else None

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    @property
    def multilingual(self) -> bool:
        return bool(self._backend is not None and self._backend.multilingual)

    def load(self) -> LoadReport:
        """Load the model on the best rung that works, then warm it up."""
        if self.model_path is None:
            self.model_path = resolve_model_path(self.config.model)
        threads = self.config.cpu_threads or min(8, os.cpu_count() or 1)
        self._threads = threads
        self._ladder = compute_ladder(self.config.device, self.config.compute_type,
                                      self._cuda_devices)
        t0 = time.perf_counter()
        failures = self._load_from(0)
        report = LoadReport(rung=self._ladder[self._rung_index], failures=failures,
                            load_s=time.perf_counter() - t0)
        if self.config.warmup:
            t1 = time.perf_counter()
            self._warmup()
            report.warmup_s = time.perf_counter() - t1
        self.report = report
        return report

    def _load_from(self, start: int) -> list[str]:
        failures: list[str] = []
        for i in range(start, len(self._ladder)):
            rung = self._ladder[i]
            try:
                assert self.model_path is not None
                self._backend = self._factory(self.model_path, rung.device, rung.compute_type,
                                              self._threads)
                self._rung_index = i
                if failures:
                    self.events.append(f'loaded on {rung} after: {"; ".join(failures)}')
                return failures
            except Exception as exc:
                if not (rung.device == 'cuda' and is_gpu_failure(exc)) and \
                        not _unsupported_compute(exc):
                    raise EngineError(f'loading {self.model_path} on {rung} failed: {exc}'
                                      ) from exc
                msg = f'{rung} failed: {exc}'
                _LOG.warning('ASR model: %s; stepping down', msg)
                failures.append(msg)
        raise EngineError('no compute type worked: ' + '; '.join(failures))

    def _warmup(self) -> None:
        rng = np.random.default_rng(0)
        audio = (rng.standard_normal(SAMPLE_RATE) * 0.01).astype(np.float32)
        self._decode(audio, self._request(None))

    def close(self) -> None:
        """Release the model (frees GPU memory)."""
        with self._lock:
            if self._backend is not None:
                self._backend.close()
            self._backend = None

    # -- transcription --------------------------------------------------------------------
    def _request(self, language: Optional[str], extra_prompt: str = '') -> DecodeRequest:
        c = self.config
        hot = ' '.join(x for x in (c.hotwords.strip(), extra_prompt.strip()) if x)
        return DecodeRequest(language=language or c.language, beam_size=c.beam_size,
                             initial_prompt=c.initial_prompt, hotwords=hot,
                             window_s=c.window_s, max_tokens_per_s=c.max_tokens_per_s)

    def _decode(self, audio: np.ndarray, request: DecodeRequest) -> RawDecode:
        """Decode one window, stepping down the ladder on a GPU failure (once per call)."""
        if self._backend is None:
            raise EngineError('the ASR model is not loaded')
        try:
            return self._backend.decode(audio, request)
        except Exception as exc:
            rung = self._ladder[self._rung_index]
            if rung.device != 'cuda' or not is_gpu_failure(exc) or \
                    self._rung_index + 1 >= len(self._ladder):
                raise
            self.events.append(f'{rung} failed while decoding ({exc}); stepping down')
            _LOG.warning('ASR: %s failed while decoding (%s); stepping down', rung, exc)
            self._backend.close()
            self._backend = None
            self._load_from(self._rung_index + 1)
            self.events.append(f'now running on {self._ladder[self._rung_index]}')
            assert self._backend is not None
            return self._backend.decode(audio, request)

    def transcribe(self, audio: np.ndarray, *, language: Optional[str] = None,
                   vad_speech: Optional[bool] = None, extra_prompt: str = '',
                   max_s: float = 60.0) -> AsrResult:
        """Transcribe mono 16 kHz audio (float32 or int16) and apply the guards.

        vad_speech: the voice gate's verdict for this audio (None = unknown). Raises ValueError
        for unusable audio (NaN, wrong shape, too long) and EngineError if no model is loaded.
        """
        t0 = time.perf_counter()
        audio = validate_audio(audio, max_s)
        dur = audio.size / SAMPLE_RATE
        c = self.config

        def done(**kw: Any) -> AsrResult:
            return AsrResult(audio_s=dur, processing_ms=(time.perf_counter() - t0) * 1e3, **kw)

        if audio.size < c.min_audio_ms * SAMPLE_RATE / 1000:
            return done(text='', rejected='too_short')
        if rms_dbfs(audio) < c.min_rms_dbfs:
            return done(text='', rejected='silence')
        request = self._request(language, extra_prompt)
        window = WHISPER_MAX_FRAMES * 160 - int(WINDOW_MARGIN_S * SAMPLE_RATE)
        with self._lock:
            raws = [self._decode(audio[i:i + window], request)
                    for i in range(0, audio.size, window)
                    if audio[i:i + window].size >= c.min_audio_ms * SAMPLE_RATE / 1000]
        if not raws:
            return done(text='', rejected='too_short')
        return done(**self.judge(raws, vad_speech))

    def judge(self, raws: Sequence[RawDecode], vad_speech: Optional[bool]) -> dict[str, Any]:
        """Apply the hallucination guards to decoded window(s); return AsrResult fields."""
        c = self.config
        raw_text = ' '.join(r.text for r in raws).strip()
        text = strip_annotations(raw_text)
        weights = [max(1, r.n_tokens) for r in raws]
        avg_logprob = float(np.average([r.avg_logprob for r in raws], weights=weights))
        no_speech = max(r.no_speech_prob for r in raws)
        ratio = compression_ratio(text)
        fields: dict[str, Any] = dict(
            confidence=float(math.exp(avg_logprob)) if math.isfinite(avg_logprob) else 0.0,
            language=raws[0].language, no_speech_prob=no_speech, avg_logprob=avg_logprob,
            compression_ratio=ratio, raw_text=raw_text, window_s=raws[0].window_s)
        norm = normalize_text(text)
        reason: Optional[str] = None
        ns_threshold = c.no_speech_threshold if vad_speech is not False else \
            min(c.no_speech_threshold, c.vad_no_speech_threshold)
        if not norm:
            reason = 'empty'
        elif no_speech > ns_threshold and avg_logprob < c.log_prob_threshold:
            reason = 'no_speech'
        elif vad_speech is False and no_speech > ns_threshold:
            reason = 'no_speech'
        elif avg_logprob < c.min_avg_logprob:
            reason = 'low_logprob'
        elif ratio > c.compression_ratio_threshold or any(r.hit_max_length for r in raws):
            reason = 'repetition'
        elif norm in self._fillers and (vad_speech is False
                                        or no_speech >= c.filler_no_speech_prob
                                        or avg_logprob < c.filler_min_logprob):
            reason = 'filler'
        if reason:
            fields.update(text='', rejected=reason)
        else:
            fields.update(text=text)
        return fields


def _unsupported_compute(exc: BaseException) -> bool:
    """CTranslate2's error for a compute type the device cannot run (e.g. CPU float16)."""
    text = str(exc).lower()
    return 'compute type' in text or 'not support efficient' in text
