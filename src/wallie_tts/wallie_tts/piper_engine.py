"""Piper (VITS, ONNX) engine: the CPU default voice.

Pure Python (no ROS imports). Uses the piper-tts 1.8 API (``PiperVoice`` with our own
onnxruntime session so the thread count is ours), one audio block per sentence.
Peak normalisation per sentence is off (it makes a short clause as loud as a long one);
a fixed gain is applied instead so consecutive pieces keep the same loudness.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from wallie_common import model_store
from wallie_tts.config import PiperSettings
from wallie_tts.engine import EngineError, TtsEngine


class PiperEngine(TtsEngine):
    """A Piper voice from the model store (or an explicit .onnx path)."""

    name = 'piper'

    def __init__(self, settings: PiperSettings) -> None:
        self.settings = settings
        self._voice: Optional[Any] = None
        self._rate = 22050
        self.model_file: Optional[Path] = None

    @property
    def sample_rate(self) -> int:
        return self._rate

    def load(self) -> None:
        try:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as exc:
            raise EngineError(f'piper-tts is not installed ({exc}): pip install '
                              'piper-tts==1.8.0') from exc
        onnx_file = self._model_file()
        config_file = Path(str(onnx_file) + '.json')
        if not config_file.exists():
            raise EngineError(f'Piper voice config {config_file} is missing (the .onnx.json '
                              'must sit next to the .onnx)')
        try:
            config = PiperConfig.from_dict(json.loads(config_file.read_text('utf-8')))
            opts = onnxruntime.SessionOptions()
            # No busy-waiting worker threads: on a small CPU shared with the ASR and the LLM
            # spinning threads steal the cores the other stages need. Measured on 2 cores,
            # first frame of "The capital of France" beside an LLM generating at nice 10:
            # 114 ms with 1 thread, 79 ms with 2; in the live graph the gain shrank to ~20 ms
            # (the gate and ASR want that core too), so the default stays 1.
            opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
            opts.inter_op_num_threads = 1
            if self.settings.threads > 0:
                opts.intra_op_num_threads = self.settings.threads
            session = onnxruntime.InferenceSession(str(onnx_file), sess_options=opts,
                                                   providers=['CPUExecutionProvider'])
        except Exception as exc:  # noqa: BLE001 - corrupt model, bad JSON, ORT error
            raise EngineError(f'cannot load Piper voice {onnx_file}: {exc}') from exc
        self._voice = PiperVoice(session=session, config=config)
        self._rate = int(config.sample_rate)
        self.model_file = onnx_file

    def _model_file(self) -> Path:
        try:
            path = model_store.resolve_file(self.settings.voice,
                                            self.settings.model_path or None)
        except model_store.ModelStoreError as exc:
            raise EngineError(str(exc)) from exc
        if path.is_dir():
            found = sorted(path.glob('*.onnx'))
            if not found:
                raise EngineError(f'no .onnx Piper voice in {path}')
            path = found[0]
        return path

    def synthesize(self, text: str, stop: threading.Event,
                   speed: float = 1.0) -> Iterator[np.ndarray]:
        if self._voice is None:
            raise EngineError('Piper voice is not loaded')
        from piper.config import SynthesisConfig
        voice = self._voice
        syn = SynthesisConfig(
            speaker_id=self.settings.speaker_id or None,
            length_scale=float(voice.config.length_scale) / max(speed, 0.1),
            normalize_audio=False,
            volume=1.0,
        )
        gain = np.float32(self.settings.gain)
        for chunk in voice.synthesize(text, syn):
            if stop.is_set():
                return
            audio = np.asarray(chunk.audio_float_array, dtype=np.float32) * gain
            yield np.clip(audio, -1.0, 1.0)

    def close(self) -> None:
        self._voice = None

    def describe(self) -> str:
        name = self.model_file.name if self.model_file else self.settings.voice
        return f'piper {name} @ {self._rate} Hz'
