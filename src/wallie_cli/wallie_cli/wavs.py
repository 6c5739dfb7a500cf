"""WAV input and output of the live-graph harness: the acoustic speech bounds of a clip, 16 kHz
loading, inputs padded for the capture node, and replies read out of a growing WAV file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NS = 1_000_000_000
RATE = 16000
FRAME_MS = 32
# Seconds of silence put around a user's WAV before the capture node plays it: a little
# lead so the VAD sees the speech start, enough trail for the endpoint to be confirmed.
LEAD_S = 0.5
TRAIL_S = 1.5

class GraphError(RuntimeError):
    """The graph could not be started or did not do what was asked; the message says why."""


def speech_bounds(x: np.ndarray, rate: int = RATE, floor_db: float = -40.0,
                  win_ms: float = 10.0) -> tuple[float, float] | None:
    """(start_s, end_s) of the speech in a recording, or None if it looks silent.

    10 ms windows whose RMS is within ``floor_db`` of the loudest window and at least 10 dB
    above the recording's noise floor (its quietest tenth). The fixtures use the same -40 dB
    rule on the dry signal; on a user's WAV this is an estimate.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim > 1:
        x = x.mean(axis=1)
    win = max(1, int(rate * win_ms / 1000))
    n = x.shape[0] // win
    if n == 0:
        return None
    rms = np.sqrt(np.mean(np.square(x[:n * win].reshape(n, win)), axis=1) + 1e-20)
    peak = float(rms.max())
    if peak < 1e-4:
        return None
    floor = float(np.percentile(rms, 10))              # the quietest tenth: the noise floor
    thr = max(peak * 10 ** (floor_db / 20), floor * 10 ** 0.5)
    voiced = np.flatnonzero(rms >= thr)
    if voiced.size == 0:
        return None
    return float(voiced[0] * win / rate), float((voiced[-1] + 1) * win / rate)


def load_wav_16k(path: str | os.PathLike) -> np.ndarray:
    """Any file soundfile reads, as float32 mono at 16 kHz (resampled with soxr)."""
    import soundfile as sf
    try:
        data, rate = sf.read(str(path), dtype='float32', always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise GraphError(f'cannot read audio file {path}: {exc}') from None
    if data.size == 0:
        raise GraphError(f'audio file {path} is empty')
    mono = data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise GraphError(f'audio file {path} contains NaN or infinite samples')
    if rate != RATE:
        import soxr
        mono = soxr.resample(mono, rate, RATE).astype(np.float32)
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


@dataclass
class PreparedInput:
    """A user's question, padded with silence and written as 16 kHz mono PCM for capture."""

    path: Path
    duration_s: float
    speech_start_s: float   # in the padded file
    speech_end_s: float     # in the padded file (estimate: see speech_bounds)


def prepare_input(src: str | os.PathLike, dst: str | os.PathLike, lead_s: float = LEAD_S,
                  trail_s: float = TRAIL_S) -> PreparedInput:
    """Resample/mix `src` to 16 kHz mono, add lead/trail silence, write it to `dst`."""
    import soundfile as sf
    x = load_wav_16k(src)
    bounds = speech_bounds(x)
    if bounds is None:
        raise GraphError(f'{src}: no speech found (the file is silent)')
    pad = np.concatenate([np.zeros(int(lead_s * RATE), np.float32), x,
                          np.zeros(int(trail_s * RATE), np.float32)])
    dst = Path(dst)
    sf.write(str(dst), pad, RATE, subtype='PCM_16')
    return PreparedInput(dst, pad.shape[0] / RATE, lead_s + bounds[0], lead_s + bounds[1])


class WavTail:
    """Reads what the player's WAV sink has written so far (the file is still open).

    libsndfile writes every block straight through, so the samples after the ``data``
    chunk header are readable at once; the header's sizes are only final once the player
    closes the file, so they are ignored.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._offset: int | None = None
        self.rate = 0
        self.channels = 1

    def _parse(self) -> bool:
        if self._offset is not None:
            return True
        try:
            with open(self.path, 'rb') as fh:
                head = fh.read(4096)
        except OSError:
            return False
        if len(head) < 12 or head[:4] != b'RIFF' or head[8:12] != b'WAVE':
            return False
        pos = 12
        while pos + 8 <= len(head):
            cid, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], 'little')
            if cid == b'fmt ':
                fmt = head[pos + 8:pos + 8 + 16]
                if len(fmt) < 16:
                    return False
                self.channels = int.from_bytes(fmt[2:4], 'little')
                self.rate = int.from_bytes(fmt[4:8], 'little')
                bits = int.from_bytes(fmt[14:16], 'little')
                if bits != 16:
                    raise GraphError(f'{self.path}: {bits}-bit WAV (expected 16-bit PCM)')
            elif cid == b'data':
                self._offset = pos + 8
                return self.rate > 0
            pos += 8 + size + (size & 1)
        return False

    def samples(self) -> int:
        """Samples (per channel) written so far."""
        if not self._parse():
            return 0
        assert self._offset is not None
        try:
            size = self.path.stat().st_size
        except OSError:
            return 0
        return max(0, size - self._offset) // (2 * self.channels)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """int16 mono samples [start, stop) of what was played."""
        if not self._parse():
            return np.zeros(0, np.int16)
        assert self._offset is not None
        stop = self.samples() if stop is None else min(stop, self.samples())
        if stop <= start:
            return np.zeros(0, np.int16)
        with open(self.path, 'rb') as fh:
            fh.seek(self._offset + start * 2 * self.channels)
            raw = fh.read((stop - start) * 2 * self.channels)
        pcm = np.frombuffer(raw[:len(raw) // 2 * 2], dtype='<i2').astype(np.int16)
        if self.channels > 1:
            pcm = pcm[:pcm.shape[0] // self.channels * self.channels]
            pcm = pcm.reshape(-1, self.channels).mean(axis=1).astype(np.int16)
        return pcm


def write_wav(path: str | os.PathLike, samples: np.ndarray, rate: int) -> Path:
    """Write float samples as a 16-bit WAV (creating its directory); return its absolute path."""
    import soundfile as sf
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(samples), rate, subtype='PCM_16')
    return path
