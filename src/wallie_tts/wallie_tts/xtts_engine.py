"""Coqui XTTS v2 engine (GPU) with streaming inference and voice cloning.

Pure Python (no ROS imports). Needs the optional ``coqui-tts`` package, torch with CUDA and the
XTTS v2 checkpoint directory (config.json, model.pth, vocab.json, speakers_xtts.pth) in the
model store as ``xtts-v2`` or at an explicit path: nothing is downloaded. The imports are
guarded so that this module (and the speaker-file validation) works without any of them.

Voice cloning: ``speaker_wav`` must be 10-30 s of mono speech; a bad file raises
:class:`SpeakerWavError` with the reason and the engine keeps its current voice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from wallie_common import model_store
from wallie_tts.config import XttsSettings
from wallie_tts.engine import EngineError, TtsEngine

XTTS_RATE = 24000
MIN_SPEAKER_S = 10.0
MAX_SPEAKER_S = 30.0
MIN_SPEAKER_RATE = 16000
MIN_VOICED_S = 3.0          # at least this much of the file must be above the silence floor
SILENCE_RMS = 10 ** (-50 / 20)   # -50 dBFS
_FRAME_S = 0.03


class SpeakerWavError(EngineError):
    """The voice-cloning reference file cannot be used; the message says why."""


@dataclass(frozen=True)
class SpeakerAudio:
    """A validated voice-cloning reference."""

    path: Path
    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def validate_speaker_wav(path: str | Path) -> SpeakerAudio:
    """Check that ``path`` is 10-30 s of mono speech at >= 16 kHz; raise SpeakerWavError."""
    p = Path(path).expanduser()
    if not str(path):
        raise SpeakerWavError('no speaker file given')
    if not p.is_file():
        raise SpeakerWavError(f'speaker file {p} does not exist')
    try:
        import soundfile
        data, rate = soundfile.read(str(p), dtype='float32', always_2d=True)
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types
        raise SpeakerWavError(f'speaker file {p} is not a readable audio file '
                              f'(WAV/FLAC/OGG expected): {exc}') from exc
    if data.shape[1] != 1:
        raise SpeakerWavError(f'speaker file {p} has {data.shape[1]} channels; it must be '
                              f'mono (e.g. `sox {p.name} -c 1 mono.wav`)')
    if rate < MIN_SPEAKER_RATE:
        raise SpeakerWavError(f'speaker file {p} is sampled at {rate} Hz; at least '
                              f'{MIN_SPEAKER_RATE} Hz is needed')
    samples = data[:, 0]
    if not np.isfinite(samples).all():
        raise SpeakerWavError(f'speaker file {p} contains NaN or infinite samples')
    duration = len(samples) / rate
    if duration < MIN_SPEAKER_S:
        raise SpeakerWavError(f'speaker file {p} is {duration:.1f} s long; voice cloning '
                              f'needs {MIN_SPEAKER_S:.0f}-{MAX_SPEAKER_S:.0f} s of speech')
    if duration > MAX_SPEAKER_S:
        raise SpeakerWavError(f'speaker file {p} is {duration:.1f} s long; use at most '
                              f'{MAX_SPEAKER_S:.0f} s (trim it, e.g. `sox in.wav out.wav trim 0 '
                              f'{MAX_SPEAKER_S:.0f}`)')
    frame = max(1, int(rate * _FRAME_S))
    n = len(samples) // frame
    rms = np.sqrt(np.mean(samples[:n * frame].reshape(n, frame) ** 2, axis=1))
    voiced_s = float((rms > SILENCE_RMS).sum()) * frame / rate
    if voiced_s < MIN_VOICED_S:
        raise SpeakerWavError(f'speaker file {p} is silent or nearly silent '
                              f'({voiced_s:.1f} s above -50 dBFS; at least {MIN_VOICED_S:.0f} '
                              's of speech needed)')
    return SpeakerAudio(p, samples, int(rate))


class XttsEngine(TtsEngine):
    """XTTS v2 through coqui-tts: streamed 24 kHz audio in the cloned (or studio) voice."""

    name = 'xtts'

    def __init__(self, settings: XttsSettings) -> None:
        self.settings = settings
        self._model: Optional[Any] = None
        self._latents: Optional[tuple[Any, Any]] = None
        self._voice_name = ''

    @property
    def sample_rate(self) -> int:
        return XTTS_RATE

    def load(self) -> None:
        try:
            import torch
            from TTS.tts.configs.xtts_config import XttsConfig
            from TTS.tts.models.xtts import Xtts
        except Exception as exc:  # noqa: BLE001 - ImportError or a broken torch/torchaudio
            raise EngineError(f'XTTS needs the optional coqui-tts package with torch '
                              f'(pip install coqui-tts): {exc!r}') from exc
        if self.settings.device.startswith('cuda') and not torch.cuda.is_available():
            raise EngineError('XTTS: no CUDA GPU available (set tts.xtts.device to cpu to run '
                              'it very slowly on the CPU)')
        try:
            directory = model_store.resolve(self.settings.model_id,
                                            self.settings.model_path or None)
        except model_store.ModelStoreError as exc:
            raise EngineError(f'XTTS checkpoint not found: {exc}') from exc
        speaker = None
        if self.settings.speaker_wav:
            speaker = validate_speaker_wav(self.settings.speaker_wav)
        try:
            config = XttsConfig()
            config.load_json(str(directory / 'config.json'))
            model = Xtts.init_from_config(config)
            model.load_checkpoint(config, checkpoint_dir=str(directory), eval=True,
                                  use_deepspeed=False)
            model.to(self.settings.device)
        except Exception as exc:  # noqa: BLE001 - missing files, CUDA OOM, version mismatch
            raise EngineError(f'cannot load XTTS from {directory}: {exc!r}') from exc
        self._model = model
        if speaker is not None:
            self._latents = self._clone(speaker)
            self._voice_name = speaker.path.name
        else:
            self._latents = self._studio_speaker(self.settings.speaker)
            self._voice_name = self.settings.speaker

    def _clone(self, speaker: SpeakerAudio) -> tuple[Any, Any]:
        assert self._model is not None
        try:
            gpt_latent, speaker_embedding = self._model.get_conditioning_latents(
                audio_path=[str(speaker.path)])
        except Exception as exc:  # noqa: BLE001
            raise SpeakerWavError(f'XTTS could not compute a voice from {speaker.path}: '
                                  f'{exc!r}') from exc
        return gpt_latent, speaker_embedding

    def _studio_speaker(self, name: str) -> tuple[Any, Any]:
        assert self._model is not None
        manager = getattr(self._model, 'speaker_manager', None)
        speakers = getattr(manager, 'speakers', None) or {}
        if name not in speakers:
            known = ', '.join(sorted(speakers)[:8]) or 'none (speakers_xtts.pth missing?)'
            raise EngineError(f"XTTS studio speaker '{name}' not found (known: {known}); "
                              'or set tts.speaker_wav to clone a voice')
        entry = speakers[name]
        return entry['gpt_cond_latent'], entry['speaker_embedding']

    def set_speaker_wav(self, path: str) -> str:
        """Switch to a cloned voice; on any error raise and keep the current voice."""
        speaker = validate_speaker_wav(path)
        if self._model is None:
            raise EngineError('XTTS is not loaded')
        self._latents = self._clone(speaker)
        self._voice_name = speaker.path.name
        return self._voice_name

    def synthesize(self, text: str, stop: threading.Event,
                   speed: float = 1.0) -> Iterator[np.ndarray]:
        if self._model is None or self._latents is None:
            raise EngineError('XTTS is not loaded')
        gpt_latent, speaker_embedding = self._latents
        stream = self._model.inference_stream(
            text, self.settings.language, gpt_latent, speaker_embedding,
            stream_chunk_size=self.settings.stream_chunk_size, speed=speed,
            enable_text_splitting=False)
        for chunk in stream:
            if stop.is_set():
                return
            audio = chunk.detach().float().cpu().numpy().reshape(-1)
            yield np.clip(audio.astype(np.float32), -1.0, 1.0)

    def close(self) -> None:
        model, self._model, self._latents = self._model, None, None
        if model is not None:
            del model
            try:
                import gc

                import torch
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001 - best effort
                pass

    def describe(self) -> str:
        return f'xtts v2 voice {self._voice_name or "?"} on {self.settings.device}'
