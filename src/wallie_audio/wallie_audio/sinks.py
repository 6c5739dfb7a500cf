"""Audio sinks for the player (no ROS): a PortAudio device, a WAV file, a null sink.

Every sink paces in real time and returns, for each block it accepts, the wall-clock time
at which the block's first sample becomes audible (output latency included), so the player
can stamp `first_audible` and publish the playback reference on the same clock as the mic.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import numpy as np

NS = 1_000_000_000


class Sink(Protocol):
    """What the player plays through: takes blocks in real time and says when each becomes
    audible."""

    rate: int
    latency_s: float

    def write(self, block: np.ndarray) -> int:
        """Play one float32 mono block; return the audible time (ns) of its first sample."""
        ...

    def abort(self) -> None:
        """Drop whatever is buffered and not yet audible (flush)."""
        ...

    def close(self) -> None:
        ...


class PacedClock:
    """Real-time pacing: block k is audible at start + k / rate; `write` returns when the
    block is due to be handed to the (virtual) device, `ahead_s` before it is audible."""

    def __init__(self, rate: int, latency_s: float = 0.0, ahead_s: float = 0.02) -> None:
        self.rate = rate
        self.latency_s = latency_s
        self.ahead_s = ahead_s
        self._start_ns = 0           # audible time of sample 0 of the current run
        self._written = 0            # samples since start

    def next(self, n: int, realtime: bool = True) -> int:
        now = time.time_ns()
        end_of_run = self._start_ns + self._written * NS // self.rate
        if self._start_ns == 0 or end_of_run < now:
            # idle (underrun or first block): audio starts after the output latency
            self._start_ns = now + int(self.latency_s * NS)
            self._written = 0
        audible = self._start_ns + self._written * NS // self.rate
        self._written += n
        if realtime:
            wait = (audible - int((self.latency_s + self.ahead_s) * NS) - now) / NS
            if wait > 0:
                time.sleep(wait)
        return audible

    def reset(self) -> None:
        self._start_ns = 0
        self._written = 0

    def buffered_s(self) -> float:
        """Seconds written but not yet audible."""
        if self._start_ns == 0:
            return 0.0
        end = self._start_ns + self._written * NS // self.rate
        return max(0.0, (end - time.time_ns()) / NS)


class NullSink:
    """Discards audio but keeps real-time pacing and audible-time stamps."""

    def __init__(self, rate: int = 16000, latency_s: float = 0.0, realtime: bool = True) -> None:
        self.rate = rate
        self.latency_s = latency_s
        self.realtime = realtime
        self.clock = PacedClock(rate, latency_s)
        self.samples_written = 0

    def write(self, block: np.ndarray) -> int:
        self.samples_written += block.shape[0]
        return self.clock.next(block.shape[0], self.realtime)

    def abort(self) -> None:
        self.clock.reset()

    def close(self) -> None:
        pass


class WavSink(NullSink):
    """Writes what is played to a WAV file (16-bit), paced like a device by default."""

    def __init__(self, path: str | Path, rate: int = 16000, realtime: bool = True) -> None:
        import soundfile as sf
        super().__init__(rate, 0.0, realtime)
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = sf.SoundFile(str(self.path), 'w', samplerate=rate, channels=1,
                                  subtype='PCM_16')

    def write(self, block: np.ndarray) -> int:
        self._file.write(block)
        return super().write(block)

    def close(self) -> None:
        try:
            self._file.close()
        except Exception:
            pass


class DeviceSink:
    """A PortAudio output device (sounddevice) in blocking mode."""

    def __init__(self, device: str = '', rate: int = 0) -> None:
        import sounddevice as sd
        self._sd = sd
        dev: int | None = None
        if device not in ('', 'default'):
            if device.isdigit():
                dev = int(device)
            else:
                matches = [i for i, d in enumerate(sd.query_devices())
                           if device.lower() in d['name'].lower()
                           and d['max_output_channels'] > 0]
                if not matches:
                    raise RuntimeError(f'no output device matches {device!r}')
                dev = matches[0]
        info = sd.query_devices(dev, 'output')
        self.rate = int(rate or info['default_samplerate'])
        self._stream = sd.OutputStream(device=dev, samplerate=self.rate, channels=1,
                                       dtype='float32', latency='low')
        self._stream.start()
        self.latency_s = float(self._stream.latency or 0.0)
        self.clock = PacedClock(self.rate, self.latency_s)

    def write(self, block: np.ndarray) -> int:
        audible = self.clock.next(block.shape[0], realtime=False)
        self._stream.write(np.ascontiguousarray(block, dtype=np.float32)[:, None])
        return audible

    def abort(self) -> None:
        self._stream.abort()      # drops buffered audio at once
        self._stream.start()
        self.clock.reset()

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:
            pass


def make_sink(kind: str, device: str = '', path: str = '', rate: int = 16000,
              latency_s: float = 0.0, realtime: bool = True) -> Sink:
    """Open the sink named by the player's `sink` parameter (device, file or null); ValueError
    for an unknown kind or a file sink without a path."""
    if kind == 'null':
        return NullSink(rate or 16000, latency_s, realtime)
    if kind == 'file':
        if not path:
            raise ValueError('sink=file needs player.file_path')
        return WavSink(path, rate or 16000, realtime)
    if kind == 'device':
        return DeviceSink(device, rate)
    raise ValueError(f'unknown sink {kind!r}: one of device, file, null')
