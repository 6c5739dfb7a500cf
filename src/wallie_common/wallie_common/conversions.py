"""Audio message <-> numpy conversions (buffer views, no per-sample Python loops)."""

from __future__ import annotations

import array
from dataclasses import dataclass

import numpy as np

from wallie_common import timeutil
from wallie_interfaces.msg import AudioFrame

MAX_FRAME_SAMPLES = 16000 * 10  # 10 s at 16 kHz per channel: anything bigger is malformed


class BadAudio(ValueError):
    """An audio message that cannot be used as is; the message says why."""


@dataclass(frozen=True)
class Audio:
    """Decoded audio: float32 samples in [-1, 1], shape (n, channels)."""

    samples: np.ndarray
    sample_rate: int
    stamp_ns: int

    @property
    def mono(self) -> np.ndarray:
        """The samples mixed down to one channel."""
        if self.samples.shape[1] == 1:
            return self.samples[:, 0]
        return self.samples.mean(axis=1, dtype=np.float32)


def float_to_s16(samples: np.ndarray) -> np.ndarray:
    """Convert float samples in [-1, 1] to int16 (clipping)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def s16_to_float(samples: np.ndarray) -> np.ndarray:
    """Convert int16 samples to float32 in [-1, 1]."""
    return samples.astype(np.float32) * (1.0 / 32768.0)


def frame_to_audio(msg: AudioFrame, max_samples: int = MAX_FRAME_SAMPLES) -> Audio:
    """Decode an AudioFrame; raise BadAudio on anything malformed.

    NaN/inf samples in float frames are replaced by 0 (repaired, not rejected) and counted
    by the caller via the `repaired` attribute of the raised-free path: use `validate_*`
    helpers when the count matters.
    """
    if msg.channels < 1:
        raise BadAudio(f'channels={msg.channels}: must be >= 1')
    if not 1000 <= msg.sample_rate <= 384000:
        raise BadAudio(f'sample_rate={msg.sample_rate} Hz is out of range 1000..384000')
    raw = memoryview(msg.data) if not isinstance(msg.data, (bytes, bytearray)) else msg.data
    if msg.encoding == AudioFrame.ENCODING_S16LE:
        width, dtype = 2, np.dtype('<i2')
    elif msg.encoding == AudioFrame.ENCODING_F32LE:
        width, dtype = 4, np.dtype('<f4')
    else:
        raise BadAudio(f'unknown encoding {msg.encoding!r} (use S16LE or F32LE)')
    nbytes = len(raw) if not isinstance(raw, memoryview) else raw.nbytes
    if nbytes == 0:
        raise BadAudio('empty frame')
    if nbytes % (width * msg.channels):
        raise BadAudio(f'{nbytes} bytes is not a whole number of {msg.channels}-channel '
                       f'{msg.encoding} samples')
    n = nbytes // (width * msg.channels)
    if n > max_samples:
        raise BadAudio(f'frame of {n} samples is larger than the limit {max_samples}')
    data = np.frombuffer(raw, dtype=dtype).reshape(n, msg.channels)
    if dtype.kind == 'i':
        samples = s16_to_float(data)
    else:
        samples = data.astype(np.float32)
        if not np.isfinite(samples).all():
            raise BadAudio('frame contains NaN or infinite samples')
        samples = np.clip(samples, -1.0, 1.0)
    return Audio(samples, int(msg.sample_rate), timeutil.from_msg(msg.header.stamp))


def audio_to_frame(samples: np.ndarray, sample_rate: int, stamp_ns: int, seq: int = 0,
                   frame_id: str = '', stream_id: str = '', segment: int = 0) -> AudioFrame:
    """Encode mono or (n, channels) samples (int16 or float) as an S16LE AudioFrame."""
    if samples.dtype != np.int16:
        samples = float_to_s16(np.asarray(samples, dtype=np.float32))
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    msg = AudioFrame()
    msg.header.stamp = timeutil.to_msg(stamp_ns)
    msg.header.frame_id = frame_id
    msg.sample_rate = int(sample_rate)
    msg.channels = channels
    msg.encoding = AudioFrame.ENCODING_S16LE
    msg.seq = seq
    msg.stream_id = stream_id
    msg.segment = segment
    msg.data = np.ascontiguousarray(samples, dtype='<i2').tobytes()
    return msg


def to_int16_array(samples: np.ndarray) -> array.array:
    """Pack int16 samples for an `int16[]` message field (fast path of rclpy)."""
    out = array.array('h')
    out.frombytes(np.ascontiguousarray(samples, dtype=np.int16).tobytes())
    return out


def from_int16_field(field) -> np.ndarray:
    """View an `int16[]` message field as an int16 numpy array (no copy)."""
    return np.frombuffer(field, dtype=np.int16) if len(field) else np.zeros(0, np.int16)
