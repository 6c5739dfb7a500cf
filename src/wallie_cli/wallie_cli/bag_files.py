"""rosbag2 files without ROS: the typestore of Wallie's messages, CDR helpers, reading any bag,
and audio bags (``wallie_interfaces/msg/AudioFrame`` on ``/audio/in``), with the `rosbags`
library. Bags are rosbag2 directories (``metadata.yaml`` version 9 + one ``.mcap`` file, the
Jazzy default), so ``ros2 bag play`` / ``ros2 bag info`` read what this module writes and it
reads what ``ros2 bag record`` writes (mcap or sqlite3). The live side (rclpy) is
:mod:`wallie_cli.bags`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Iterable,
    Iterator,
    Literal,
    NamedTuple,
)

import numpy as np
from rosbags.interfaces import (
    Nodetype,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

AUDIO_TYPE = 'wallie_interfaces/msg/AudioFrame'
AUDIO_TOPIC = '/audio/in'
HEADER_TYPE = 'std_msgs/msg/Header'
BAG_VERSION: Literal[9] = 9  # rosbag2 Jazzy's metadata version; rosbags reads <= 9
DEFAULT_FRAME_MS = 32
# Topics `wallie record --all` leaves out unless named (ros2 bag record also skips hidden ones).
DEFAULT_EXCLUDE = ('/rosout', '/parameter_events')

# The microphone topic's QoS (wallie_common.qos.AUDIO_QOS) as stored in bag metadata, so that
# `ros2 bag play` and `wallie replay` offer what the capture node offers.
_ZERO = QosTime(0, 0)
AUDIO_BAG_QOS = Qos(QosHistory.KEEP_LAST, 50, QosReliability.BEST_EFFORT,
                    QosDurability.VOLATILE, _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO,
                    False)


class BagError(Exception):
    """A bag that cannot be written, read or replayed as asked; the message says why."""


# --------------------------------------------------------------------------- types


def _share_roots() -> list[Path]:
    roots: list[Path] = []
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            roots.append(Path(prefix) / 'share')
    roots.append(Path(sys.prefix) / 'share')
    return roots


def message_dir(package: str) -> Path | None:
    """The directory holding ``package``'s ``.msg`` files (from its installed share directory)."""
    for root in _share_roots():
        candidate = root / package / 'msg'
        if candidate.is_dir():
            return candidate
    return None


def _field_types(desc: tuple[Any, Any]) -> Iterator[str]:
    kind, detail = desc
    if kind == Nodetype.NAME:
        yield detail
    elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        yield from _field_types(detail[0])


def _register_package(ts: Typestore, package: str) -> bool:
    """Register every message of ``package`` (and the packages it uses) found on disk."""
    directory = message_dir(package)
    if directory is None:
        return False
    types: dict[str, Any] = {}
    for path in sorted(directory.glob('*.msg')):
        types.update(get_types_from_msg(path.read_text(), f'{package}/msg/{path.stem}'))
    missing = {dep.split('/')[0] for fields in types.values() for _name, desc in fields[1]
               for dep in _field_types(desc)
               if dep not in ts.fielddefs and dep not in types}
    for dep_package in sorted(missing - {package}):
        _register_package(ts, dep_package)
    ts.register(types)
    return True


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The shared Jazzy typestore with ``wallie_interfaces`` registered."""
    ts = get_typestore(Stores.ROS2_JAZZY)
    if not _register_package(ts, 'wallie_interfaces'):
        raise BagError('wallie_interfaces message definitions not found (looked in '
                       f'{", ".join(str(r) for r in _share_roots())}); is it installed?')
    return ts


_type_lock = threading.Lock()


def ensure_type(msgtype: str, ts: Typestore | None = None) -> bool:
    """Make ``msgtype`` (``pkg/msg/Name``) known to the typestore; False if not found."""
    ts = ts or typestore()
    with _type_lock:
        if msgtype in ts.fielddefs:
            return True
        package, _, _ = msgtype.partition('/')
        try:
            _register_package(ts, package)
        except Exception:  # a malformed .msg somewhere: treat the type as unknown
            return False
        return msgtype in ts.fielddefs


def starts_with_header(msgtype: str, ts: Typestore | None = None) -> bool:
    """Whether the first field of ``msgtype`` is a ``std_msgs/Header`` (re-stampable)."""
    ts = ts or typestore()
    if not ensure_type(msgtype, ts):
        return False
    fields = ts.fielddefs[msgtype][1]
    return bool(fields) and fields[0][1] == (Nodetype.NAME, HEADER_TYPE)


# --------------------------------------------------------------------------- CDR helpers


def _cdr_byteorder(raw: bytes | bytearray | memoryview) -> str:
    if len(raw) < 12:
        raise BagError(f'CDR message of {len(raw)} bytes is too short for a header stamp')
    return '<' if raw[1] & 1 else '>'


def header_stamp_ns(raw: bytes | bytearray | memoryview) -> int:
    """The ``header.stamp`` of a serialized message whose first field is a Header."""
    sec, nanosec = struct.unpack_from(_cdr_byteorder(raw) + 'iI', raw, 4)
    return sec * 1_000_000_000 + nanosec


def restamp_cdr(raw: bytes | bytearray | memoryview, stamp_ns: int) -> bytes:
    """Copy of the serialized message with ``header.stamp`` set to ``stamp_ns``."""
    out = bytearray(raw)
    sec, nanosec = divmod(max(0, int(stamp_ns)), 1_000_000_000)
    struct.pack_into(_cdr_byteorder(out) + 'iI', out, 4, sec, nanosec)
    return bytes(out)


# --------------------------------------------------------------------------- reading


def _bag_path(path: str | os.PathLike[str]) -> Path:
    """A bag directory, or a storage file whose directory has no metadata (raw mcap)."""
    p = Path(path)
    if not p.exists():
        raise BagError(f'bag {p} does not exist')
    if p.is_file() and (p.parent / 'metadata.yaml').exists():
        return p.parent
    if p.is_dir() and not (p / 'metadata.yaml').exists():
        raise BagError(f'{p} is not a rosbag2 directory (no metadata.yaml)')
    return p


@contextlib.contextmanager
def open_reader(path: str | os.PathLike[str]) -> Iterator[Reader]:
    """``with open_reader(bag) as reader``: an open rosbags Reader, BagError if unreadable."""
    try:
        reader = Reader(_bag_path(path))
        reader.open()
    except BagError:
        raise
    except Exception as exc:
        raise BagError(f'cannot read bag {path}: {exc}') from exc
    try:
        yield reader
    finally:
        reader.close()


@dataclass(frozen=True)
class TopicSummary:
    """One topic of a bag."""

    name: str
    msgtype: str
    count: int
    qos: tuple[Qos, ...] = ()


@dataclass(frozen=True)
class BagInfo:
    """What ``ros2 bag info`` shows, as data."""

    path: Path
    start_ns: int
    end_ns: int
    message_count: int
    topics: dict[str, TopicSummary]

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9


def bag_info(path: str | os.PathLike[str]) -> BagInfo:
    """Summarize a bag (topics, types, counts, time span)."""
    with open_reader(path) as reader:
        topics: dict[str, TopicSummary] = {}
        for conn in reader.connections:
            qos = tuple(getattr(conn.ext, 'offered_qos_profiles', ()) or ())
            old = topics.get(conn.topic)
            count = conn.msgcount + (old.count if old else 0)
            topics[conn.topic] = TopicSummary(conn.topic, conn.msgtype, count, qos)
        start = reader.start_time if reader.message_count else 0
        end = reader.end_time - 1 if reader.message_count else 0  # rosbags: end exclusive
        return BagInfo(_bag_path(path), start, end, reader.message_count, topics)


class RawMessage(NamedTuple):
    """One stored message: topic, type name, log time (ns) and CDR bytes."""

    topic: str
    msgtype: str
    log_ns: int
    data: bytes


def iter_messages(path: str | os.PathLike[str],
                  topics: Iterable[str] | None = None) -> Iterator[RawMessage]:
    """Yield the bag's messages in log-time order, optionally only some topics."""
    wanted = None if topics is None else {_absolute(t) for t in topics}
    with open_reader(path) as reader:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if wanted is not None and not conns:
            have = sorted({c.topic for c in reader.connections})
            raise BagError(f'none of the topics {sorted(wanted)} is in the bag (it has {have})')
        for conn, log_ns, data in reader.messages(connections=conns):
            yield RawMessage(conn.topic, conn.msgtype, log_ns, bytes(data))


def _absolute(topic: str) -> str:
    return topic if topic.startswith('/') else '/' + topic


# --------------------------------------------------------------------------- audio bags


class AudioBag(NamedTuple):
    """Audio read back from a bag: int16 samples, the sample rate and per-frame stamps."""

    samples: np.ndarray  # int16, shape (n,) for mono, (n, channels) otherwise
    rate: int
    stamps: np.ndarray  # int64 header.stamp (ns) of each frame's first sample


def write_audio_bag(path: str | os.PathLike[str], samples: np.ndarray,
                    sample_rate: int = 16000, frame_ms: float = DEFAULT_FRAME_MS,
                    start_ns: int | None = None, topic: str = AUDIO_TOPIC,
                    frame_id: str = 'bag', storage: str = 'mcap',
                    custom_data: dict[str, str] | None = None) -> Path:
    """Write mono (or (n, channels)) audio as AudioFrame messages, S16LE, ``frame_ms`` each.

    Frame ``i`` is stamped (header and log time) ``start_ns + i * frame duration``, as a
    capture node would stamp it; the last frame may be shorter. ``start_ns`` defaults to
    now. Float input is taken as [-1, 1] and clipped. Returns the bag directory.
    """
    data = np.asarray(samples)
    if data.size == 0:
        raise BagError('no samples to write')
    if data.dtype != np.int16:
        if not np.issubdtype(data.dtype, np.floating):
            raise BagError(f'samples must be int16 or float in [-1, 1], not {data.dtype}')
        if not np.isfinite(data).all():
            raise BagError('samples contain NaN or infinite values')
        data = (np.clip(data, -1.0, 1.0) * 32767.0).astype(np.int16)
    if data.ndim not in (1, 2):
        raise BagError(f'samples must be 1-D (mono) or (n, channels), not shape {data.shape}')
    channels = 1 if data.ndim == 1 else int(data.shape[1])
    if not 1000 <= sample_rate <= 384000:
        raise BagError(f'sample_rate={sample_rate} Hz is out of range 1000..384000')
    frame_len = int(round(sample_rate * frame_ms / 1000.0))
    if frame_len < 1:
        raise BagError(f'frame_ms={frame_ms} gives frames of no samples')
    start = time.time_ns() if start_ns is None else int(start_ns)
    ts = typestore()
    frame_cls, header_cls = ts.types[AUDIO_TYPE], ts.types[HEADER_TYPE]
    time_cls = ts.types['builtin_interfaces/msg/Time']
    pcm = np.ascontiguousarray(data, dtype='<i2')
    n = pcm.shape[0]
    if Path(path).exists():
        raise BagError(f'{path} exists already; bags are never overwritten')
    writer = Writer(Path(path), version=BAG_VERSION, storage_plugin=_storage(storage))
    try:
        writer.open()
        for key, value in (custom_data or {}).items():
            writer.set_custom_data(key, value)
        conn = writer.add_connection(_absolute(topic), AUDIO_TYPE, typestore=ts,
                                     offered_qos_profiles=[AUDIO_BAG_QOS])
        for seq, first in enumerate(range(0, n, frame_len)):
            stamp = start + (first * 1_000_000_000) // sample_rate
            sec, nanosec = divmod(stamp, 1_000_000_000)
            chunk = pcm[first:first + frame_len]
            msg = frame_cls(
                header=header_cls(stamp=time_cls(sec=sec, nanosec=nanosec), frame_id=frame_id),
                sample_rate=sample_rate, channels=channels, encoding='S16LE', seq=seq,
                stream_id='', segment=0, end_of_segment=False, end_of_stream=False,
                data=np.frombuffer(chunk.tobytes(), dtype=np.uint8))
            writer.write(conn, stamp, ts.serialize_cdr(msg, AUDIO_TYPE))
    except BaseException:
        if writer.storage is not None:
            writer.close()
        raise
    writer.close()
    return Path(path)


def _storage(name: str) -> StoragePlugin:
    try:
        return {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[name]
    except KeyError:
        raise BagError(f'storage {name!r}: use mcap or sqlite3') from None


def read_audio_bag(path: str | os.PathLike[str], topic: str | None = None) -> AudioBag:
    """Read the AudioFrame stream of a bag back into one int16 array.

    ``topic`` defaults to ``/audio/in`` if present, else the bag's only AudioFrame topic.
    Raises BagError for mixed sample rates/channel counts or unknown encodings.
    """
    ts = typestore()
    with open_reader(path) as reader:
        audio_topics = sorted({c.topic for c in reader.connections if c.msgtype == AUDIO_TYPE})
        if topic is None:
            if AUDIO_TOPIC in audio_topics or len(audio_topics) != 1:
                topic = AUDIO_TOPIC
            else:
                topic = audio_topics[0]
        topic = _absolute(topic)
        if topic not in audio_topics:
            raise BagError(f'bag {path} has no {AUDIO_TYPE} on {topic} '
                           f'(audio topics: {audio_topics})')
        conns = [c for c in reader.connections if c.topic == topic]
        chunks: list[np.ndarray] = []
        stamps: list[int] = []
        rate = channels = 0
        for _conn, _log_ns, raw in reader.messages(connections=conns):
            msg: Any = ts.deserialize_cdr(raw, AUDIO_TYPE)
            if rate == 0:
                rate, channels = int(msg.sample_rate), int(msg.channels)
            elif (msg.sample_rate, msg.channels) != (rate, channels):
                raise BagError(f'frame {msg.seq}: {msg.sample_rate} Hz x {msg.channels} after '
                               f'{rate} Hz x {channels}; mixed formats are not supported')
            if channels < 1:
                raise BagError(f'frame {msg.seq}: channels={channels}')
            buf = np.asarray(msg.data, dtype=np.uint8).tobytes()
            if msg.encoding == 'S16LE':
                pcm = np.frombuffer(buf, dtype='<i2').astype(np.int16)
            elif msg.encoding == 'F32LE':
                f32 = np.nan_to_num(np.frombuffer(buf, dtype='<f4'))
                pcm = (np.clip(f32, -1.0, 1.0) * 32767.0).astype(np.int16)
            else:
                raise BagError(f'frame {msg.seq}: unknown encoding {msg.encoding!r}')
            chunks.append(pcm)
            stamps.append(int(msg.header.stamp.sec) * 1_000_000_000
                          + int(msg.header.stamp.nanosec))
    if not chunks:
        raise BagError(f'bag {path} has no audio frames on {topic}')
    samples = np.concatenate(chunks)
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels)
    return AudioBag(samples, rate, np.asarray(stamps, dtype=np.int64))


def load_sidecar(bag: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ground-truth sidecar ``<bag>.json`` next to a fixture bag directory, if any."""
    path = _bag_path(bag)
    sidecar = path.with_name(path.name + '.json') if path.is_dir() else path.with_suffix('.json')
    if not sidecar.is_file():
        return None
    data = json.loads(sidecar.read_text())
    return data if isinstance(data, dict) else None
