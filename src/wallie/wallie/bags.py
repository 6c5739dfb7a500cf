"""Record and replay rosbag2 bags without a ROS distro (the `rosbags` library + rclpy).

Bags are rosbag2 directories (``metadata.yaml`` version 9 + one ``.mcap`` file, the Jazzy
default), so ``ros2 bag play`` / ``ros2 bag info`` read what this module writes and this
module reads what ``ros2 bag record`` writes (mcap or sqlite3).

Three layers:

* types: a Jazzy typestore with every ``wallie_interfaces`` message registered, plus any
  other message package whose ``.msg`` files are installed (``<prefix>/share/<pkg>/msg``);
* audio bags (no rclpy): :func:`write_audio_bag` / :func:`read_audio_bag` for
  ``wallie_interfaces/msg/AudioFrame`` on ``/audio/in``;
* live (rclpy, imported lazily): :func:`replay` publishes the recorded CDR bytes as they are
  (optionally re-stamping ``std_msgs/Header`` stamps to now) with the original timing, and
  :class:`Recorder` / :func:`record` store raw messages of any type with their type names.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import math
import os
import queue
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Iterable,
    Iterator,
    Literal,
    NamedTuple,
    Sequence,
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
    from rosbags.interfaces import Connection
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
    """The directory holding ``package``'s ``.msg`` files (installed, else the source tree)."""
    for root in _share_roots():
        candidate = root / package / 'msg'
        if candidate.is_dir():
            return candidate
    # A source checkout without an install: <repo>/src/<package>/msg
    source = Path(__file__).resolve().parents[2] / package / 'msg'
    return source if source.is_dir() else None


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


# --------------------------------------------------------------------------- rclpy glue


def import_message(msgtype: str) -> Any:
    """The rclpy message class of ``pkg/msg/Name`` (ImportError if not installed)."""
    parts = msgtype.split('/')
    if len(parts) != 3:
        raise ImportError(f'bad message type name {msgtype!r} (expected pkg/msg/Name)')
    module = importlib.import_module(f'{parts[0]}.{parts[1]}')
    try:
        return getattr(module, parts[2])
    except AttributeError:
        raise ImportError(f'{parts[0]}.{parts[1]} has no {parts[2]}') from None


def qos_from_bag(profiles: Sequence[Qos]) -> Any:
    """An rclpy QoSProfile that offers what the recorded publishers offered.

    Like ``ros2 bag play``: best effort if any recorded publisher was best effort, transient
    local only if all were. No recorded profile: reliable, volatile (matches any subscriber).
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    depth = max([10] + [p.depth for p in profiles])
    best_effort = any(p.reliability == QosReliability.BEST_EFFORT for p in profiles)
    transient = bool(profiles) and all(p.durability == QosDurability.TRANSIENT_LOCAL
                                       for p in profiles)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if transient
                    else DurabilityPolicy.VOLATILE))


def qos_to_bag(profile: Any) -> Qos:
    """A rosbags Qos record of an rclpy QoSProfile (for the bag's offered_qos_profiles)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
    return Qos(
        QosHistory.KEEP_ALL if profile.history == HistoryPolicy.KEEP_ALL
        else QosHistory.KEEP_LAST,
        int(profile.depth),
        QosReliability.BEST_EFFORT if profile.reliability == ReliabilityPolicy.BEST_EFFORT
        else QosReliability.RELIABLE,
        QosDurability.TRANSIENT_LOCAL
        if profile.durability == DurabilityPolicy.TRANSIENT_LOCAL else QosDurability.VOLATILE,
        _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO, False)


class RosSession:
    """A private rclpy context + node (+ optional spinning thread) for CLI verbs and tools.

    Uses its own Context (never the default one) so it coexists with other rclpy users in
    the process, and installs no signal handlers (DESIGN.md §3: shutdown-safe pattern).
    """

    def __init__(self, name: str, spin: bool = False, args: list[str] | None = None) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        self._rclpy = rclpy
        self.context = rclpy.Context()
        # args=[] rather than None: never parse the CLI's own argv as ROS arguments
        rclpy.init(args=list(args or []), context=self.context,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if spin:
            self._thread = threading.Thread(target=self._spin, name=f'{name}-spin', daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        from wallie_common.runtime import spin_until_stopped
        spin_until_stopped(self.executor, self.context, self._stop)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> RosSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- replay


@dataclass
class ReplayStats:
    """What a replay did. Lateness = publish time minus the scheduled time, in ms."""

    messages: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    passes: int = 0
    offset_ns: int = 0  # last pass: re-stamped stamp = recorded stamp + offset_ns
    wall_s: float = 0.0
    # the most recent publish delays (bounded: --loop may run for days)
    lateness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def lateness_summary(self) -> dict[str, float]:
        if not self.lateness_ms:
            return {'p50': math.nan, 'p95': math.nan, 'max': math.nan}
        arr = np.asarray(self.lateness_ms)
        return {'p50': float(np.percentile(arr, 50)), 'p95': float(np.percentile(arr, 95)),
                'max': float(arr.max())}


def replay(bag: str | os.PathLike[str], node: Any, rate: float = 1.0, *, fast: bool = False,
           restamp: bool = False, loop: bool = False, topics: Iterable[str] | None = None,
           remap: dict[str, str] | None = None, qos: Any = None,
           stop: threading.Event | None = None, wait_for_subscribers: float = 0.0,
           on_start: Callable[[int], None] | None = None, linger_s: float = 0.3) -> ReplayStats:
    """Publish a bag's messages on ``node`` with the recorded timing.

    * ``rate``: playback speed factor (2.0 = twice as fast); ``fast``: no pacing at all
      (best-effort subscribers may drop frames; prefer a rate for lossless bulk runs).
    * ``restamp``: set ``header.stamp`` of Header-first messages to ``recorded + offset``,
      offset = (node clock at the start of the pass) - (first log time), so stamps are "now"
      on the recorded timeline (at any rate the spacing of stamps is the recorded one: they
      describe the audio, not the replay speed). The live graph needs this.
    * ``remap``: recorded topic -> published topic; ``qos`` overrides the recorded QoS.
    * ``wait_for_subscribers``: wait up to this many seconds for every publisher to be
      matched before the first message (the pass starts anyway afterwards).
    * ``on_start(offset_ns)`` is called right before the first message of every pass.
    * ``linger_s``: keep the publishers this long after the last message (unless stopped),
      so the last messages are delivered before the publishers go away.
    Messages are published as raw CDR bytes; the message classes must be importable.
    """
    from rclpy.duration import Duration
    from rclpy.qos import ReliabilityPolicy
    if not fast and not (rate > 0 and math.isfinite(rate)):
        raise BagError(f'rate={rate}: must be a positive number (or use fast)')
    stop = stop or threading.Event()
    remap = {_absolute(k): _absolute(v) for k, v in (remap or {}).items()}
    info = bag_info(bag)
    wanted = set(info.topics) if topics is None else {_absolute(t) for t in topics}
    missing = wanted - set(info.topics)
    if missing:
        raise BagError(f'topics {sorted(missing)} are not in the bag '
                       f'(it has {sorted(info.topics)})')
    stats = ReplayStats()
    publishers: dict[str, Any] = {}
    restampable: set[str] = set()
    for name in sorted(wanted):
        summary = info.topics[name]
        try:
            msg_cls = import_message(summary.msgtype)
        except ImportError as exc:
            stats.skipped_topics[name] = f'{summary.msgtype}: {exc}'
            continue
        profile = qos if qos is not None else qos_from_bag(summary.qos)
        publishers[name] = node.create_publisher(msg_cls, remap.get(name, name), profile)
        if restamp and starts_with_header(summary.msgtype):
            restampable.add(name)
    if not publishers:
        raise BagError(f'nothing to replay from {bag}: {stats.skipped_topics or "no topics"}')
    clock = node.get_clock()
    try:
        if wait_for_subscribers > 0:
            deadline = time.monotonic() + wait_for_subscribers
            while (time.monotonic() < deadline and not stop.is_set()
                   and any(p.get_subscription_count() == 0 for p in publishers.values())):
                stop.wait(0.02)
        t_begin = time.monotonic()
        while not stop.is_set():
            _replay_pass(bag, publishers, restampable, clock, rate, fast, stop, stats, on_start)
            stats.passes += 1
            if not loop or stats.messages == 0:
                break
        stats.wall_s = time.monotonic() - t_begin
        if linger_s > 0 and not stop.is_set():
            for pub in publishers.values():
                if pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE:
                    pub.wait_for_all_acked(Duration(nanoseconds=int(linger_s * 1e9)))
            stop.wait(linger_s)
    finally:
        for pub in publishers.values():
            node.destroy_publisher(pub)
    return stats


def _replay_pass(bag: str | os.PathLike[str], publishers: dict[str, Any], restampable: set[str],
                 clock: Any, rate: float, fast: bool, stop: threading.Event, stats: ReplayStats,
                 on_start: Callable[[int], None] | None) -> None:
    t0: int | None = None
    start_mono = 0
    offset = 0
    for msg in iter_messages(bag, publishers):
        if stop.is_set():
            return
        if t0 is None:
            t0 = msg.log_ns
            offset = clock.now().nanoseconds - t0
            stats.offset_ns = offset
            if on_start is not None:
                on_start(offset)
            start_mono = time.monotonic_ns()
        due = start_mono + (0 if fast else int((msg.log_ns - t0) / rate))
        wait = due - time.monotonic_ns()
        if wait > 0 and stop.wait(wait / 1e9):
            return
        data = msg.data
        if msg.topic in restampable:
            data = restamp_cdr(data, header_stamp_ns(data) + offset)
        publishers[msg.topic].publish(data)
        if not fast:  # unpaced: there is no schedule to be late for
            stats.lateness_ms.append((time.monotonic_ns() - due) / 1e6)
        stats.messages += 1
        stats.per_topic[msg.topic] = stats.per_topic.get(msg.topic, 0) + 1


# --------------------------------------------------------------------------- record


@dataclass
class RecordStats:
    """What a recording holds."""

    path: Path
    per_topic: dict[str, int] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def messages(self) -> int:
        return sum(self.per_topic.values())


class Recorder:
    """Record raw messages of live topics into a rosbag2 bag (any message type).

    Runs its own rclpy context and node (``wallie_recorder``) with a spinning thread; a
    writer thread owns the bag, subscription callbacks only enqueue. Topics are discovered
    continuously, so topics that appear after the start are recorded too. Subscriptions
    adapt to the publishers' QoS (best effort if any publisher is), and the offered QoS is
    stored in the bag like ``ros2 bag record`` does.
    """

    def __init__(self, out_path: str | os.PathLike[str], topics: Iterable[str] | None = None,
                 *, storage: str = 'mcap', exclude: Iterable[str] = DEFAULT_EXCLUDE,
                 discovery_period_s: float = 0.1, node_name: str = 'wallie_recorder') -> None:
        self.path = Path(out_path)
        if self.path.exists():
            raise BagError(f'{self.path} exists already; choose another output path')
        self.topics = None if topics is None else {_absolute(t) for t in topics}
        self.exclude = {_absolute(t) for t in exclude}
        self._storage = _storage(storage)
        self._period = discovery_period_s
        self._node_name = node_name
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._subs: dict[str, Any] = {}
        self.stats = RecordStats(self.path)
        self._session: RosSession | None = None
        self._writer_thread: threading.Thread | None = None
        self._writer_error: BaseException | None = None
        self._t_start = 0.0

    # -- lifecycle
    def start(self) -> Recorder:
        writer = Writer(self.path, version=BAG_VERSION, storage_plugin=self._storage)
        writer.open()
        self._writer_thread = threading.Thread(target=self._write_loop, args=(writer,),
                                               name='bag-writer', daemon=True)
        self._writer_thread.start()
        self._t_start = time.monotonic()
        try:
            self._session = RosSession(self._node_name, spin=True)
            self._session.node.create_timer(self._period, self._discover)
        except BaseException:
            self.stop()  # close the (empty) bag before reporting the failure
            raise
        return self

    def stop(self) -> RecordStats:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._writer_thread is not None:
            self._queue.put(None)
            self._writer_thread.join()
            self._writer_thread = None
            self.stats.duration_s = time.monotonic() - self._t_start
        if self._writer_error is not None:
            raise BagError(f'writing {self.path} failed: {self._writer_error}')
        return self.stats

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for_topics(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait until every requested topic is being recorded (True) or timeout (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            if self.topics is not None and self.topics <= set(self._subs):
                return True
            time.sleep(0.02)
        return self.topics is not None and self.topics <= set(self._subs)

    # -- discovery (executor thread)
    def _discover(self) -> None:
        session = self._session
        if session is None:
            return
        node = session.node
        for name, types in node.get_topic_names_and_types():
            if name in self._subs or name in self.stats.skipped_topics:
                continue
            if self.topics is not None:
                if name not in self.topics:
                    continue
            elif name in self.exclude or '/_' in name:
                continue
            if len(types) != 1:
                self.stats.skipped_topics[name] = f'several types {types}'
                continue
            self._subscribe(node, name, types[0])

    def _subscribe(self, node: Any, name: str, msgtype: str) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        try:
            msg_cls = import_message(msgtype)
        except ImportError as exc:
            self.stats.skipped_topics[name] = f'{msgtype}: {exc}'
            return
        if not ensure_type(msgtype):
            self.stats.skipped_topics[name] = f'{msgtype}: no message definition found'
            return
        offered = [info.qos_profile for info in node.get_publishers_info_by_topic(name)]
        if not offered:
            return  # no publisher yet: its QoS is unknown, try again on the next round
        best_effort = any(p.reliability == ReliabilityPolicy.BEST_EFFORT for p in offered)
        transient = all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered)
        profile = QoSProfile(
            depth=1000,
            reliability=(ReliabilityPolicy.BEST_EFFORT if best_effort
                         else ReliabilityPolicy.RELIABLE),
            durability=(DurabilityPolicy.TRANSIENT_LOCAL if transient
                        else DurabilityPolicy.VOLATILE))
        self._queue.put(('conn', name, msgtype, [qos_to_bag(p) for p in offered]))
        put = self._queue.put
        clock = node.get_clock()

        def on_message(data: bytes, info: Any) -> None:
            stamp = 0
            if isinstance(info, dict):
                stamp = int(info.get('received_timestamp', 0) or 0)
            put(('msg', name, stamp or clock.now().nanoseconds, data))

        self._subs[name] = node.create_subscription(msg_cls, name, on_message, profile, raw=True)
        self.stats.types[name] = msgtype
        self.stats.per_topic.setdefault(name, 0)

    # -- writer thread
    def _write_loop(self, writer: Writer) -> None:
        conns: dict[str, Connection] = {}
        ts = typestore()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                if item[0] == 'conn':
                    _, name, msgtype, offered = item
                    with _type_lock:  # the typestore may be growing in another thread
                        conns[name] = writer.add_connection(name, msgtype, typestore=ts,
                                                            offered_qos_profiles=offered)
                else:
                    _, name, stamp, data = item
                    writer.write(conns[name], stamp, data)
                    self.stats.per_topic[name] += 1
        except Exception as exc:  # reported by stop(); producers never block (unbounded)
            self._writer_error = exc
        finally:
            if writer.min_timestamp > writer.max_timestamp:  # empty bag: sane time span
                writer.min_timestamp = writer.max_timestamp = time.time_ns()
            try:
                writer.close()
            except Exception as exc:
                self._writer_error = self._writer_error or exc


def record(topics: Iterable[str] | None, out_path: str | os.PathLike[str],
           duration: float | None = None, stop: threading.Event | None = None,
           **kwargs: Any) -> RecordStats:
    """Record ``topics`` (None: all but DEFAULT_EXCLUDE and hidden ones) until ``duration``
    seconds have passed or ``stop`` is set; return what was recorded."""
    if duration is None and stop is None:
        raise BagError('record needs a duration or a stop event')
    stop = stop or threading.Event()
    recorder = Recorder(out_path, topics, **kwargs).start()
    try:
        stop.wait(duration)
    finally:
        stats = recorder.stop()
    return stats
