"""Audio sources and frame hygiene for the capture node (no ROS).

- `FrameCleaner`: any incoming block (rate, channels, float/int) -> 16 kHz mono float32,
  or a `BadFrame` with a reason key (NaN/inf, empty, absurdly large, bad rate).
- `Framer`: re-blocks a stream into fixed frames stamped with their first sample's time.
- `FileSource`: WAV/FLAC, real time or as fast as possible.
- `paced_replay`: recorded (bag) audio with its original timing, re-stamped onto now.
- `DeviceSource`: a PortAudio input via sounddevice, reopened with backoff when it fails.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

RATE = 16000
NS = 1_000_000_000
MAX_FRAME_S = 10.0             # a single incoming block longer than this is malformed


class BadFrame(ValueError):
    """A frame that was rejected; `key` names the kind for counters."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class StreamResampler:
    """Streaming soxr resampler (keeps its filter state between blocks)."""

    def __init__(self, in_rate: int, out_rate: int = RATE, quality: str = 'HQ') -> None:
        import soxr
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._rs = None if self.in_rate == self.out_rate else soxr.ResampleStream(
            self.in_rate, self.out_rate, 1, dtype='float32', quality=quality)

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self._rs is None:
            return x.astype(np.float32, copy=False)
        return self._rs.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=last)


class FrameCleaner:
    """Validate and repair incoming audio: wrong rate -> resampled, several channels ->
    mixed down, int -> float; NaN/inf, empty or huge -> BadFrame (counted by the caller)."""

    def __init__(self, out_rate: int = RATE, max_seconds: float = MAX_FRAME_S) -> None:
        self.out_rate = out_rate
        self.max_seconds = max_seconds
        self._resamplers: dict[int, StreamResampler] = {}

    def clean(self, samples: np.ndarray, rate: int) -> tuple[np.ndarray, list[str]]:
        """Return (mono float32 at out_rate, list of repairs made)."""
        repairs: list[str] = []
        if not 1000 <= int(rate) <= 384000:
            raise BadFrame('bad_rate', f'sample rate {rate} Hz is out of range 1000..384000')
        x = np.asarray(samples)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] < 1:
            raise BadFrame('bad_shape', f'cannot use audio of shape {x.shape}')
        if x.shape[0] == 0:
            raise BadFrame('empty', 'empty frame')
        if x.shape[0] > self.max_seconds * rate:
            raise BadFrame('too_large', f'frame of {x.shape[0] / rate:.1f} s is longer than '
                           f'{self.max_seconds:.0f} s')
        if x.dtype.kind in 'iu':
            scale = float(np.iinfo(x.dtype).max) + 1.0
            x = x.astype(np.float32) / scale
        else:
            x = x.astype(np.float32, copy=False)
            if not np.isfinite(x).all():
                raise BadFrame('not_finite', 'frame contains NaN or infinite samples')
            peak = float(np.max(np.abs(x)))
            if peak > 1.0:
                x = np.clip(x, -1.0, 1.0)
                repairs.append('clipped')
        if x.shape[1] > 1:
            x = x.mean(axis=1, dtype=np.float32)[:, None]
            repairs.append('downmixed')
        mono = x[:, 0]
        if int(rate) != self.out_rate:
            rs = self._resamplers.get(int(rate))
            if rs is None:
                rs = self._resamplers[int(rate)] = StreamResampler(int(rate), self.out_rate)
            mono = rs(mono)
            repairs.append('resampled')
        return np.ascontiguousarray(mono, dtype=np.float32), repairs


class Framer:
    """Cut a stream of stamped chunks into frames of `frame` samples, each stamped with the
    capture time of its first sample (derived from the chunk stamps and the sample count)."""

    def __init__(self, frame: int, rate: int = RATE) -> None:
        if frame <= 0:
            raise ValueError('frame must be > 0 samples')
        self.frame = frame
        self.rate = rate
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_stamp = 0

    def push(self, x: np.ndarray, stamp_ns: int) -> list[tuple[np.ndarray, int]]:
        if self._buf.shape[0]:
            # A chunk that does not continue the held remainder (the input paused, or a
            # replay looped back in time) must not inherit the old clock: drop the
            # remainder and resync to the incoming stamp.
            expected = self._buf_stamp + self._buf.shape[0] * NS // self.rate
            if abs(stamp_ns - expected) > self.frame * NS // self.rate:
                self._buf = np.zeros(0, dtype=np.float32)
        if self._buf.shape[0] == 0:
            self._buf_stamp = stamp_ns
            self._buf = x.astype(np.float32, copy=False)
        else:
            self._buf = np.concatenate([self._buf, x.astype(np.float32, copy=False)])
        out = []
        n = self._buf.shape[0] // self.frame
        for i in range(n):
            stamp = self._buf_stamp + (i * self.frame) * NS // self.rate
            out.append((self._buf[i * self.frame:(i + 1) * self.frame].copy(), stamp))
        if n:
            self._buf_stamp += (n * self.frame) * NS // self.rate
            self._buf = self._buf[n * self.frame:]
        return out


def frame_samples(frame_ms: int, rate: int = RATE) -> int:
    """Samples in one frame of `frame_ms` at `rate`; ValueError outside 10..32 ms."""
    if not 10 <= frame_ms <= 32:
        raise ValueError(f'frame_ms={frame_ms}: must be 10..32 ms')
    return int(rate * frame_ms / 1000)


class FileSource:
    """A WAV/FLAC file as a stream of 16 kHz mono frames.

    realtime=True paces frames like a microphone (a frame is yielded when its last sample
    would have been captured; stamps are wall-clock capture times). realtime=False yields as
    fast as possible with stamps on a virtual clock starting now.
    """

    def __init__(self, path: str | Path, frame_ms: int = 32, realtime: bool = True,
                 loop: bool = False, lead_silence_s: float = 0.0) -> None:
        import soundfile as sf
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise FileNotFoundError(f'audio file {self.path} does not exist')
        data, rate = sf.read(str(self.path), dtype='float32', always_2d=True)
        mono, _ = FrameCleaner(RATE, max_seconds=24 * 3600).clean(data, rate)
        if lead_silence_s > 0:
            mono = np.concatenate([np.zeros(int(lead_silence_s * RATE), np.float32), mono])
        self.audio = mono
        self.frame = frame_samples(frame_ms)
        self.realtime = realtime
        self.loop = loop
        self.duration_s = mono.shape[0] / RATE

    def frames(self, stop: threading.Event | None = None,
               start_ns: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
        t0 = time.time_ns() if start_ns is None else start_ns
        mono0 = time.monotonic_ns()
        offset = 0
        n = self.frame
        while stop is None or not stop.is_set():
            if offset + n > self.audio.shape[0]:
                if not self.loop:
                    rest = self.audio[offset:]
                    if rest.shape[0]:
                        frame = np.zeros(n, np.float32)
                        frame[:rest.shape[0]] = rest
                        yield frame, t0 + offset * NS // RATE
                    return
                t0 += offset * NS // RATE
                mono0 += offset * NS // RATE
                offset = 0
            frame = self.audio[offset:offset + n]
            stamp = t0 + offset * NS // RATE
            if self.realtime:
                due = mono0 + (offset + n) * NS // RATE
                wait = (due - time.monotonic_ns()) / NS
                if wait > 0:
                    if stop is not None:
                        if stop.wait(wait):
                            return
                    else:
                        time.sleep(wait)
            yield frame, stamp
            offset += n


def paced_replay(chunks: Iterable[tuple[int, int, np.ndarray]], realtime: bool = True,
                 stop: threading.Event | None = None, start_ns: int | None = None,
                 clock: Callable[[], int] = time.monotonic_ns,
                 ) -> Iterator[tuple[np.ndarray, int]]:
    """Replay recorded audio chunks `(log time ns, header stamp ns, samples)` with their
    original timing: chunk k is released `log_k - log_0` after the first (realtime=True; as
    fast as possible otherwise) and stamped `start_ns + (stamp_k - stamp_0)`, so gaps and
    the spacing of the recording survive while the stamps land on the live clock (the
    graph compares them with now). A missing header stamp (0) falls back to the log time."""
    first: tuple[int, int] | None = None
    t0 = mono0 = 0
    for log_ns, stamp_ns, samples in chunks:
        if stop is not None and stop.is_set():
            return
        if first is None:            # the clocks start with the first chunk (not bag opening)
            first = (log_ns, stamp_ns or log_ns)
            t0 = time.time_ns() if start_ns is None else start_ns
            mono0 = clock()
        if realtime:
            wait = (mono0 + (log_ns - first[0]) - clock()) / NS
            if wait > 0:
                if stop is None:
                    time.sleep(wait)
                elif stop.wait(wait):
                    return
        yield samples, t0 + ((stamp_ns or log_ns) - first[1])


StatusCallback = Callable[[str, str], None]   # (level: 'ok'|'warn'|'error', message)


class DeviceSource:
    """A PortAudio input device (sounddevice), at its native rate, resampled to 16 kHz.

    The device is chosen by index or name substring. If it cannot be opened or disappears,
    the error is reported through `on_status` and it is retried with exponential backoff;
    `frames()` never raises because of the device.
    """

    def __init__(self, device: str = '', frame_ms: int = 32, channels: int = 1,
                 rate: int = 0, on_status: StatusCallback | None = None,
                 backoff_s: tuple[float, float] = (0.5, 10.0)) -> None:
        self.device = device
        self.frame = frame_samples(frame_ms)
        self.channels = channels
        self.rate = rate
        self.on_status = on_status or (lambda level, msg: None)
        self.backoff_s = backoff_s
        self.opens = 0
        self.failures = 0
        self._q: queue.Queue = queue.Queue(maxsize=200)
        self.overflows = 0

    def _pick(self, sd) -> tuple[int | None, int]:
        dev: int | None = None
        if self.device not in ('', 'default'):
            if self.device.isdigit():
                dev = int(self.device)
            else:
                matches = [i for i, d in enumerate(sd.query_devices())
                           if self.device.lower() in d['name'].lower()
                           and d['max_input_channels'] > 0]
                if not matches:
                    raise RuntimeError(f'no input device matches {self.device!r}')
                dev = matches[0]
        info = sd.query_devices(dev, 'input')
        rate = self.rate or int(info['default_samplerate'])
        return dev, rate

    def frames(self, stop: threading.Event) -> Iterator[tuple[np.ndarray, int]]:
        delay = self.backoff_s[0]
        while not stop.is_set():
            try:
                import sounddevice as sd
                dev, rate = self._pick(sd)
                resample = StreamResampler(rate, RATE)
                framer = Framer(self.frame)
                stream = sd.InputStream(device=dev, samplerate=rate, channels=self.channels,
                                        dtype='float32', blocksize=int(rate * 0.01),
                                        callback=self._callback)
                self.opens += 1
                with stream:
                    in_latency = float(stream.latency or 0.0)
                    self.on_status('ok', f'input device {dev if dev is not None else "default"}'
                                   f' open at {rate} Hz (latency {in_latency * 1e3:.0f} ms)')
                    delay = self.backoff_s[0]
                    while not stop.is_set():
                        try:
                            data, stamp = self._q.get(timeout=0.5)
                        except queue.Empty:
                            if not stream.active:
                                raise RuntimeError('input stream stopped')
                            continue
                        if isinstance(data, Exception):
                            raise data
                        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                        y = resample(mono)
                        # stamp: callback time minus the block and the input latency
                        first = stamp - int((data.shape[0] / rate + in_latency) * NS)
                        yield from framer.push(y, first)
            except Exception as exc:  # device missing, unplugged, PortAudio error
                self.failures += 1
                self.on_status('error', f'audio input failed: {exc}; retrying in {delay:.1f} s')
                if stop.wait(delay):
                    return
                delay = min(delay * 2, self.backoff_s[1])

    def _callback(self, indata, frames, time_info, status) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        try:
            self._q.put_nowait((indata.copy(), time.time_ns()))
        except queue.Full:
            self.overflows += 1


def audio_common_to_samples(data: bytes, sample_format: str = 'S16LE', channels: int = 1,
                            coding_format: str = 'wave') -> np.ndarray:
    """Decode audio_common_msgs/AudioData bytes (as described by AudioInfo) to an
    (n, channels) array. Only raw PCM ('wave'/'raw'/'') is supported (no mp3)."""
    if coding_format not in ('wave', 'raw', '', 'pcm'):
        raise BadFrame('bad_coding', f'coding_format {coding_format!r} is not raw PCM')
    fmt = sample_format.upper()
    dtypes = {'S16LE': '<i2', 'S32LE': '<i4', 'F32LE': '<f4', 'U8': 'u1', 'S8': 'i1'}
    if fmt not in dtypes:
        raise BadFrame('bad_format', f'sample_format {sample_format!r} not one of '
                       f'{sorted(dtypes)}')
    dt = np.dtype(dtypes[fmt])
    if channels < 1:
        raise BadFrame('bad_shape', f'channels={channels}')
    if len(data) % (dt.itemsize * channels):
        raise BadFrame('bad_shape', f'{len(data)} bytes is not a whole number of frames')
    x = np.frombuffer(bytes(data), dtype=dt).reshape(-1, channels)
    if fmt == 'U8':
        x = (x.astype(np.int16) - 128).astype(np.int8)
    return x
