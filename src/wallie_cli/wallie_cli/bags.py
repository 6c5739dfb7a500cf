"""Record and replay rosbag2 bags live, without a ROS distro (rclpy, imported lazily).

:func:`replay` publishes the recorded CDR bytes as they are (optionally re-stamping
``std_msgs/Header`` stamps to now) with the original timing, and :class:`Recorder` /
:func:`record` store raw messages of any type with their type names. Files, types and audio
bags are :mod:`wallie_cli.bag_files`.
"""

from __future__ import annotations

import importlib
import math
import os
import queue
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
    Sequence,
)

import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
)
from rosbags.rosbag2 import Writer

from wallie_cli.bag_files import (
    _ZERO,
    BAG_VERSION,
    DEFAULT_EXCLUDE,
    BagError,
    _absolute,
    _storage,
    _type_lock,
    bag_info,
    ensure_type,
    header_stamp_ns,
    iter_messages,
    restamp_cdr,
    starts_with_header,
    typestore,
)

if TYPE_CHECKING:
    from rosbags.interfaces import Connection


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
    the process, and installs no signal handlers (see wallie_common.runtime for why).
    """

    def __init__(self, name: str, spin: bool = False, args: list[str] | None = None,
                 namespace: str = '') -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        self._rclpy = rclpy
        self.context = rclpy.Context()
        # args=[] rather than None: never parse the CLI's own argv as ROS arguments
        rclpy.init(args=list(args or []), context=self.context,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, namespace=namespace.strip('/') or None,
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if spin:
            self.start_spinning()

    def start_spinning(self) -> None:
        """Spin the node on a background thread until close() (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._spin, name=f'{self.node.get_name()}-spin',
                                            daemon=True)
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
