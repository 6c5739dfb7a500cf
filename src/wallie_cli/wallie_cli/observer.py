"""An in-process rclpy observer of the live graph: what it says about each turn (voice activity,
transcripts, reply chunks, stage stamps, playback events, interrupts, TurnMetrics, history)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from wallie_cli.wavs import NS, GraphError


# ---------------------------------------------------------------------------- turn records
def _ns(stamp: Any) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


@dataclass
class TurnRecord:
    """Everything the graph said about one turn (plain Python, JSON-friendly)."""

    turn_id: str
    first_seen_ns: int
    activity: list[dict[str, Any]] = field(default_factory=list)
    wake: list[dict[str, Any]] = field(default_factory=list)
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    chunks: list[dict[str, Any]] = field(default_factory=list)
    stamps: dict[str, int] = field(default_factory=dict)
    playback: dict[str, dict[str, Any]] = field(default_factory=dict)
    interrupts: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    last_event_ns: int = 0

    # -- derived ---------------------------------------------------------------------------
    def events(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.activity if a['event'] == name]

    @property
    def ended(self) -> bool:
        return bool(self.events('END_OF_TURN'))

    @property
    def discarded(self) -> bool:
        return bool(self.events('TURN_DISCARDED'))

    @property
    def final(self) -> dict[str, Any] | None:
        finals = [t for t in self.transcripts if t['is_final']]
        return finals[-1] if finals else None

    @property
    def transcript(self) -> str:
        f = self.final
        return f['text'] if f else ''

    @property
    def reply_chunks(self) -> list[str]:
        by_index: dict[int, str] = {}
        for c in self.chunks:
            if c['text']:
                by_index[c['index']] = c['text']
        return [by_index[i] for i in sorted(by_index)]

    @property
    def reply_text(self) -> str:
        return ' '.join(self.reply_chunks)

    @property
    def reply_done(self) -> bool:
        return any(c['is_final'] for c in self.chunks)

    @property
    def audible(self) -> bool:
        return 'first_audible' in self.playback

    @property
    def playback_over(self) -> bool:
        return 'finished' in self.playback or 'flushed' in self.playback

    @property
    def interrupted(self) -> bool:
        return bool(self.interrupts) or 'flushed' in self.playback

    @property
    def unanswered(self) -> bool:
        """The turn ended without anything to say (empty final, or discarded)."""
        if self.discarded:
            return True
        f = self.final
        return f is not None and not f['text'].strip() and not self.chunks

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_ACTIVITY = {1: 'SPEECH_START', 2: 'SPEECH_PROBABLY_ENDED', 3: 'SPEECH_RESUMED',
             4: 'END_OF_TURN', 5: 'TURN_DISCARDED', 6: 'BARGE_IN'}


_PLAYBACK = {1: 'first_audible', 2: 'finished', 3: 'flushed'}


_INTERRUPT = {1: 'BARGE_IN', 2: 'CANCEL', 3: 'NEW_WAKE', 4: 'NEW_TURN', 5: 'SHUTDOWN'}


_STATE = {0: 'starting', 1: 'idle', 2: 'listening', 3: 'thinking', 4: 'speaking',
          5: 'degraded', 6: 'error'}


METRIC_FIELDS = ('endpoint_ms', 'asr_ms', 'llm_first_chunk_ms', 'tts_first_audio_ms',
                 'playout_ms', 'e2e_ms', 'e2e_from_endpoint_ms', 'flush_ms')


# ---------------------------------------------------------------------------- the observer
class Observer:
    """An rclpy node in this process that records every turn the graph reports.

    Own Context (coexists with other rclpy users), no signal handlers, spun by a daemon
    thread. Also offers the few service calls the tools need (reset the conversation, set
    parameters) and publishers for feeding audio.
    """

    def __init__(self, domain_id: int, name: str = 'wallie_e2e',
                 watch_audio_in: bool = False) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from std_msgs.msg import String

        from wallie_common.qos import AUDIO_QOS, EVENT_QOS, STATE_QOS
        from wallie_interfaces.msg import (
            AssistantState,
            AudioFrame,
            Interrupt,
            PlaybackEvent,
            ReplyChunk,
            StageStamp,
            Transcript,
            TurnMetrics,
            VoiceActivity,
            WakeWord,
        )
        self._rclpy = rclpy
        self.domain_id = domain_id
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.RLock()
        self._clients: dict[tuple[Any, str], Any] = {}
        self.changed = threading.Condition(self.lock)
        self.turns: dict[str, TurnRecord] = {}
        self.state: dict[str, Any] = {}
        self.history: dict[str, Any] | None = None
        self.history_log: list[tuple[int, dict[str, Any]]] = []
        self.audio_in_first: tuple[int, int] | None = None   # (seq, stamp) of the first frame
        stamp_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500,
                               reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.VOLATILE)
        n = self.node
        n.create_subscription(AssistantState, 'assistant/state', self._on_state, STATE_QOS)
        n.create_subscription(VoiceActivity, 'voice/activity', self._on_activity, EVENT_QOS)
        n.create_subscription(WakeWord, 'voice/wake', self._on_wake, EVENT_QOS)
        n.create_subscription(Transcript, 'transcript', self._on_transcript, EVENT_QOS)
        n.create_subscription(ReplyChunk, 'reply', self._on_reply, EVENT_QOS)
        n.create_subscription(Interrupt, 'interrupt', self._on_interrupt, EVENT_QOS)
        n.create_subscription(PlaybackEvent, 'playback/events', self._on_playback, EVENT_QOS)
        n.create_subscription(StageStamp, 'metrics/stamps', self._on_stamp, stamp_qos)
        n.create_subscription(TurnMetrics, 'metrics/turn', self._on_metrics, EVENT_QOS)
        n.create_subscription(String, 'llm/history', self._on_history, STATE_QOS)
        if watch_audio_in:
            n.create_subscription(AudioFrame, 'audio/in', self._on_audio_in, AUDIO_QOS)
        self._audio_pub: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name='e2e-observer', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from wallie_common.runtime import spin_until_stopped
        spin_until_stopped(self.executor, self.context, self._stop)

    def audio_publisher(self) -> Any:
        """A persistent audio/in publisher (create it early: matching takes a moment)."""
        if self._audio_pub is None:
            from wallie_common.qos import AUDIO_QOS
            from wallie_interfaces.msg import AudioFrame
            self._audio_pub = self.node.create_publisher(AudioFrame, 'audio/in', AUDIO_QOS)
        return self._audio_pub

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            self._rclpy.try_shutdown(context=self.context)

    # -- recording ---------------------------------------------------------------------------
    def _turn(self, turn_id: str) -> TurnRecord:
        now = time.time_ns()
        rec = self.turns.get(turn_id)
        if rec is None:
            rec = self.turns[turn_id] = TurnRecord(turn_id, now)
        rec.last_event_ns = now
        return rec

    def _notify(self) -> None:
        self.changed.notify_all()

    def _on_state(self, msg: Any) -> None:
        with self.lock:
            self.state = {'state': _STATE.get(msg.state, str(msg.state)), 'ready': msg.ready,
                          'turn_id': msg.turn_id, 'detail': msg.detail,
                          'recv_ns': time.time_ns()}
            self._notify()

    def _record(self, turn_id: str, events: str, entry: dict[str, Any]) -> None:
        """Append `entry`, stamped with its arrival, to the turn's `events` list (a message
        without a turn id belongs to no turn)."""
        if not turn_id:
            return
        entry['recv_ns'] = time.time_ns()
        with self.lock:
            getattr(self._turn(turn_id), events).append(entry)
            self._notify()

    def _on_activity(self, msg: Any) -> None:
        self._record(msg.turn_id, 'activity', {
            'event': _ACTIVITY.get(msg.event, str(msg.event)),
            'stamp_ns': _ns(msg.header.stamp), 'speech_start_ns': _ns(msg.speech_start),
            'speech_end_ns': _ns(msg.speech_end), 'probability': float(msg.probability)})

    def _on_wake(self, msg: Any) -> None:
        self._record(msg.turn_id, 'wake', {'keyword': msg.keyword, 'engine': msg.engine})

    def _on_transcript(self, msg: Any) -> None:
        self._record(msg.turn_id, 'transcripts', {
            'text': msg.text, 'is_final': msg.is_final, 'is_early_final': msg.is_early_final,
            'confidence': float(msg.confidence), 'processing_ms': float(msg.processing_ms),
            'unreliable': str(getattr(msg, 'unreliable', ''))})

    def _on_reply(self, msg: Any) -> None:
        self._record(msg.turn_id, 'chunks', {'index': int(msg.index), 'text': msg.text,
                                             'is_final': msg.is_final})

    def _on_interrupt(self, msg: Any) -> None:
        self._record(msg.turn_id or '(current)', 'interrupts', {
            'reason': _INTERRUPT.get(msg.reason, str(msg.reason)),
            'stamp_ns': _ns(msg.header.stamp)})

    def _on_playback(self, msg: Any) -> None:
        if not msg.turn_id:
            return
        with self.lock:
            self._turn(msg.turn_id).playback[_PLAYBACK.get(msg.event, str(msg.event))] = {
                'stamp_ns': _ns(msg.header.stamp), 'first_audible_ns': _ns(msg.first_audible),
                'played_s': float(msg.played_s), 'segments_complete': int(msg.segments_complete),
                'segment_fraction': float(msg.segment_fraction),
                'flush_ms': float(msg.flush_ms), 'recv_ns': time.time_ns()}
            self._notify()

    def _on_stamp(self, msg: Any) -> None:
        if not msg.turn_id:
            return
        with self.lock:
            rec = self._turn(msg.turn_id)
            rec.stamps.setdefault(msg.stage, _ns(msg.stamp))
            self._notify()

    def _on_metrics(self, msg: Any) -> None:
        with self.lock:
            rec = self._turn(msg.turn_id)
            rec.metrics = {k: float(getattr(msg, k)) for k in METRIC_FIELDS}
            rec.metrics['interrupted'] = bool(msg.interrupted)
            self._notify()

    def _on_history(self, msg: Any) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        with self.lock:
            self.history = data
            self.history_log.append((time.time_ns(), data))
            del self.history_log[:-50]
            self._notify()

    def _on_audio_in(self, msg: Any) -> None:
        with self.lock:
            if self.audio_in_first is None or msg.seq < self.audio_in_first[0]:
                self.audio_in_first = (int(msg.seq), _ns(msg.header.stamp))

    # -- queries -----------------------------------------------------------------------------
    def wait(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Wait until `predicate()` (called under the lock) is truthy; return its value."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    return value
                self.changed.wait(min(left, 0.1))

    def turns_since(self, since_ns: int) -> list[TurnRecord]:
        with self.lock:
            return [t for t in self.turns.values() if t.first_seen_ns >= since_ns]

    def history_turns(self) -> list[dict[str, Any]]:
        with self.lock:
            return list((self.history or {}).get('turns', []))

    # -- calls ---------------------------------------------------------------------------------
    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        """Call a service of the graph (GraphError if it does not answer)."""
        from wallie_common import services
        key = (srv_type, name)
        with self.lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self.node.create_client(srv_type, name)
        try:
            return services.call(client, request, timeout)
        except services.ServiceCallError as exc:
            raise GraphError(str(exc)) from None

    def reset_conversation(self, timeout: float = 10.0) -> None:
        from wallie_interfaces.srv import ResetConversation
        self.call(ResetConversation, 'reset_conversation', ResetConversation.Request(), timeout)

    def set_params(self, node: str, values: Mapping[str, Any], timeout: float = 10.0) -> None:
        """`ros2 param set` for several parameters; GraphError with the reason if refused."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        req = SetParameters.Request()
        req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        res = self.call(SetParameters, f'{node}/set_parameters', req, timeout)
        bad = [f'{k}: {r.reason}' for k, r in zip(values, res.results) if not r.successful]
        if bad:
            raise GraphError(f'{node} refused: ' + '; '.join(bad))

    def get_params(self, node: str, names: Sequence[str], timeout: float = 10.0) -> list[Any]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python
        res = self.call(GetParameters, f'{node}/get_parameters',
                        GetParameters.Request(names=list(names)), timeout)
        return [parameter_value_to_python(v) for v in res.values]


# ---------------------------------------------------------------------------- small helpers
def pick_domain_id(avoid: Iterable[int] = ()) -> int:
    """A ROS domain id for a private graph (1..100, the range the test harness uses too)."""
    taken = set(avoid)
    env = os.environ.get('ROS_DOMAIN_ID', '')
    if env.isdigit():
        taken.add(int(env))
    choices = [d for d in range(1, 101) if d not in taken]
    return random.SystemRandom().choice(choices)


def free_domain_id(tries: int = 6, listen_s: float = 0.7) -> int:
    """A domain id on which no other ROS participant answers on this host (best effort).

    Several graphs (tests, benchmarks, a running assistant) on one machine must not hear
    each other: each candidate is listened to for `listen_s` before it is taken.
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    tried: list[int] = []
    for _ in range(tries):
        domain = pick_domain_id(tried)
        tried.append(domain)
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=domain,
                   signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = rclpy.create_node('wallie_domain_probe', context=ctx)
            time.sleep(listen_s)
            others = [n for n in node.get_node_names() if n != 'wallie_domain_probe']
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=ctx)
        if not others:
            return domain
    return tried[-1]
