"""Voice activity detection: Silero v6 (ONNX, plain onnxruntime) with an optional
webrtcvad pre-filter. Works on 512-sample blocks (32 ms at 16 kHz)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

RATE = 16000
BLOCK = 512                 # Silero v6 at 16 kHz takes exactly 512 new samples per call
CONTEXT = 64                # ... plus the last 64 samples of the previous call


class Vad(Protocol):
    """What the voice gate needs of a VAD: a speech probability per block, and a reset of the
    state it keeps between blocks."""

    def prob(self, block: np.ndarray) -> float:
        """Speech probability [0, 1] of one float32 block of BLOCK samples."""
        ...

    def reset(self) -> None:
        ...


def silero_model_path(explicit: str | None = None) -> Path:
    """The Silero ONNX file from the model store (never downloads)."""
    from wallie_common.model_store import resolve_file
    return resolve_file('silero-vad-v6', explicit or None)


class SileroVad:
    """Silero VAD v6 run with onnxruntime; keeps the recurrent state between blocks."""

    def __init__(self, model_path: str | Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort
        path = Path(model_path) if model_path else silero_model_path()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), sess_options=opts,
                                             providers=['CPUExecutionProvider'])
        self._sr = np.array(RATE, dtype=np.int64)
        self._input = np.zeros((1, CONTEXT + BLOCK), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._input[:] = 0.0

    def prob(self, block: np.ndarray) -> float:
        if block.shape[0] != BLOCK:
            raise ValueError(f'Silero needs blocks of {BLOCK} samples, got {block.shape[0]}')
        # Context prepend: the last CONTEXT samples of the previous call, then the new block.
        self._input[0, :CONTEXT] = self._input[0, -CONTEXT:]
        self._input[0, CONTEXT:] = block
        out, self._state = self._session.run(
            None, {'input': self._input, 'state': self._state, 'sr': self._sr})
        return float(out[0, 0])

    def skip(self, block: np.ndarray) -> None:
        """Advance the context without running the model (pre-filter said: no speech)."""
        self._input[0, :CONTEXT] = block[-CONTEXT:]


class WebRtcPrefilter:
    """webrtcvad on the first 30 ms of each block: a near-free 'surely not speech' test."""

    def __init__(self, aggressiveness: int = 2) -> None:
        import webrtcvad
        self._vad = webrtcvad.Vad(int(aggressiveness))

    def maybe_speech(self, block: np.ndarray) -> bool:
        pcm = (np.clip(block[:480], -1.0, 1.0) * 32767.0).astype('<i2').tobytes()
        return bool(self._vad.is_speech(pcm, RATE))


class GatedVad:
    """Silero behind two cheap "surely not speech" tests: digital silence (every sample below
    DIGITAL_FLOOR, e.g. a muted or idle input) and, optionally, the webrtcvad pre-filter.
    After `hangover` quiet blocks in a row Silero is skipped (probability 0) and its state
    reset, so it restarts clean on the next sound. The first `hangover` quiet blocks still
    run Silero, so its decay after speech (which the endpointer's speech-end offset is tuned
    for) is the same whether the silence after speech is digital or not."""

    DIGITAL_FLOOR = 1e-4          # ~ -80 dBFS, 3 LSB of 16-bit audio

    def __init__(self, silero: SileroVad, prefilter: WebRtcPrefilter | None = None,
                 hangover: int = 8) -> None:
        self.silero = silero
        self.prefilter = prefilter
        self.hangover = hangover
        self._quiet = 0
        self.calls = 0               # Silero model runs (for the benchmark)
        self.skipped = 0             # blocks answered without running Silero

    def reset(self) -> None:
        self.silero.reset()
        self._quiet = 0

    def prob(self, block: np.ndarray) -> float:
        quiet = not bool(np.any(np.abs(block) >= self.DIGITAL_FLOOR))
        if not quiet and self.prefilter is not None:
            quiet = not self.prefilter.maybe_speech(block)
        if quiet:
            self._quiet += 1
            if self._quiet > self.hangover:
                if self._quiet == self.hangover + 1:
                    self.silero.reset()
                self.silero.skip(block)
                self.skipped += 1
                return 0.0
        else:
            self._quiet = 0
        self.calls += 1
        return self.silero.prob(block)
