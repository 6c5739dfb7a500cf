"""End to end: run the real Wallie graph headless, feed it speech, watch one turn at a time.

This is the library behind ``wallie demo``, ``wallie ask``, ``wallie bench`` and the
conversation test suite. Nothing here is a test double: the graph is the one ``wallie up``
runs (``wallie.bringup.prepare`` -> node executables as separate processes under the
``Supervisor``, the manager bringing the stages to active), with headless parameters:

* the microphone is either the capture node reading a WAV file (``capture='file'``) or left
  out (``capture='skip'``) so that this process feeds ``audio/in`` itself: fixture bags
  replayed with :func:`wallie.bags.replay` (re-stamped to now, each frame stamped one frame
  before it is published, as a real microphone does), or :class:`EchoMic`, a simulated
  microphone that hears the player's output through an echo path plus the user's speech;
* the speaker is the player's WAV sink (``sink='file'``; :class:`WavTail` reads each reply
  out of the growing file) or its real-time null sink.

An in-process rclpy :class:`Observer` (its own context, no signal handlers) records what the
graph says about every turn: voice activity, transcripts, reply chunks, stage stamps,
playback events, interrupts, TurnMetrics and the LLM's published history. A
:class:`TurnResult` joins them with the ground truth of the input (the acoustic end of
speech on the graph's clock) into per-stage latencies.

Typical use::

    with LiveGraph(GraphOptions(capture='skip', sink='file')) as g:
        g.wait_ready()
        turn = g.ask_bag('tests/fixtures/bags/q_capital_france_enus')
        print(turn.transcript, turn.reply_text, turn.latencies())
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

NS = 1_000_000_000
RATE = 16000
FRAME_MS = 32
# Seconds of silence put around a user's WAV before the capture node plays it: a little
# lead so the VAD sees the speech start, enough trail for the endpoint to be confirmed.
LEAD_S = 0.5
TRAIL_S = 1.5

# Stage stamps in pipeline order (StageStamp constants) and the segments between them that
# add up to the end-to-end latency (speech end -> first audible sample).
CHAIN = ('speech_end', 'endpoint', 'asr_final', 'first_chunk', 'tts_first_audio',
         'first_audible')
SEGMENTS: tuple[tuple[str, str, str, str], ...] = (
    # key, label, from stamp, to stamp
    ('endpoint_ms', 'endpoint wait (VAD silence)', 'speech_end', 'endpoint'),
    ('asr_ms', 'ASR final after endpoint', 'endpoint', 'asr_final'),
    ('llm_first_chunk_ms', 'LLM first speakable chunk', 'asr_final', 'first_chunk'),
    ('tts_first_audio_ms', 'TTS first audio', 'first_chunk', 'tts_first_audio'),
    ('playout_ms', 'player: first audible sample', 'tts_first_audio', 'first_audible'),
)
EXTRA: tuple[tuple[str, str, str, str], ...] = (
    ('llm_first_token_ms', 'LLM first token', 'asr_final', 'llm_first_token'),
    ('llm_total_ms', 'LLM whole reply', 'asr_final', 'llm_done'),
    ('e2e_ms', 'end to end (speech end -> first audible)', 'speech_end', 'first_audible'),
    ('e2e_from_endpoint_ms', 'end to end from the endpoint decision', 'endpoint',
     'first_audible'),
    ('flush_ms', 'flush after interrupt', 'interrupt', 'flushed'),
)


class GraphError(RuntimeError):
    """The graph could not be started or did not do what was asked; the message says why."""


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
    import soundfile as sf
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(samples), rate, subtype='PCM_16')
    return path


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

    def _on_activity(self, msg: Any) -> None:
        if not msg.turn_id:
            return
        with self.lock:
            self._turn(msg.turn_id).activity.append({
                'event': _ACTIVITY.get(msg.event, str(msg.event)),
                'stamp_ns': _ns(msg.header.stamp), 'speech_start_ns': _ns(msg.speech_start),
                'speech_end_ns': _ns(msg.speech_end), 'probability': float(msg.probability),
                'recv_ns': time.time_ns()})
            self._notify()

    def _on_wake(self, msg: Any) -> None:
        if not msg.turn_id:
            return
        with self.lock:
            self._turn(msg.turn_id).wake.append({
                'keyword': msg.keyword, 'engine': msg.engine, 'recv_ns': time.time_ns()})
            self._notify()

    def _on_transcript(self, msg: Any) -> None:
        if not msg.turn_id:
            return
        with self.lock:
            self._turn(msg.turn_id).transcripts.append({
                'text': msg.text, 'is_final': msg.is_final,
                'is_early_final': msg.is_early_final, 'confidence': float(msg.confidence),
                'processing_ms': float(msg.processing_ms), 'recv_ns': time.time_ns()})
            self._notify()

    def _on_reply(self, msg: Any) -> None:
        if not msg.turn_id:
            return
        with self.lock:
            self._turn(msg.turn_id).chunks.append({
                'index': int(msg.index), 'text': msg.text, 'is_final': msg.is_final,
                'recv_ns': time.time_ns()})
            self._notify()

    def _on_interrupt(self, msg: Any) -> None:
        with self.lock:
            key = msg.turn_id or '(current)'
            self._turn(key).interrupts.append({
                'reason': _INTERRUPT.get(msg.reason, str(msg.reason)),
                'stamp_ns': _ns(msg.header.stamp), 'recv_ns': time.time_ns()})
            self._notify()

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
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise GraphError(f'service {name} is not available')
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done():
                if time.monotonic() > deadline:
                    raise GraphError(f'no answer from {name} within {timeout} s')
                time.sleep(0.01)
            return future.result()
        finally:
            self.node.destroy_client(client)

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


# ---------------------------------------------------------------------------- feeding audio
class _MicClock:
    """Clock for bags.replay whose `now()` lags by one frame: every frame is then stamped
    with the capture time of its first sample and published when its last sample was
    captured, exactly like a microphone (the capture node's convention)."""

    def __init__(self, node: Any, lag_ns: int) -> None:
        self._node = node
        self._lag = lag_ns

    def now(self) -> Any:
        from rclpy.time import Time
        return Time(nanoseconds=self._node.get_clock().now().nanoseconds - self._lag)


class _MicNode:
    """The observer node as bags.replay sees it (publishers + the lagging clock)."""

    def __init__(self, node: Any, lag_ns: int) -> None:
        self._node = node
        self._clock = _MicClock(node, lag_ns)

    def create_publisher(self, *args: Any, **kwargs: Any) -> Any:
        return self._node.create_publisher(*args, **kwargs)

    def destroy_publisher(self, pub: Any) -> Any:
        return self._node.destroy_publisher(pub)

    def get_clock(self) -> _MicClock:
        return self._clock


@dataclass
class Feed:
    """What was played into audio/in, with its ground truth on the graph's clock."""

    name: str
    start_ns: int = 0                  # graph-clock capture time of the first sample
    duration_s: float = 0.0
    speech_start_ns: int = 0           # 0: unknown / no speech
    speech_end_ns: int = 0             # acoustic end of speech (fixture truth or estimate)
    truth: str = 'fixture'             # 'fixture' (exact) or 'estimate'
    sidecar: dict[str, Any] = field(default_factory=dict)
    end_wall_ns: int = 0               # when the last frame was published


def fixture_bag(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """A fixture bag directory and its ground-truth sidecar (``<bag>.json``)."""
    from wallie import bags
    bag = Path(path)
    side = bags.load_sidecar(bag)
    if side is None:
        raise GraphError(f'{bag}: no sidecar {bag.name}.json with the ground truth')
    return bag, side


def replay_bag(observer: Observer, bag: str | os.PathLike, *, rate: float = 1.0,
               stop: threading.Event | None = None, frame_ms: float = FRAME_MS,
               wait_for_subscribers: float = 5.0) -> Feed:
    """Replay a fixture bag into audio/in (blocking for its duration) and map its truth.

    Frames are re-stamped to the live clock, one frame before they are published (a real
    microphone's timing), so the acoustic speech end of the sidecar maps exactly onto the
    stamps the voice gate sees: ``live = recorded + offset``.
    """
    from wallie import bags
    bag, side = fixture_bag(bag)
    offsets: list[int] = []
    lag = int(side.get('frame_ms', frame_ms) * 1e6)
    stats = bags.replay(bag, _MicNode(observer.node, lag), rate=rate, restamp=True,
                        topics=[side.get('topic', '/audio/in')], stop=stop,
                        wait_for_subscribers=wait_for_subscribers,
                        on_start=offsets.append, linger_s=0.1)
    if not offsets:
        raise GraphError(f'{bag}: nothing was replayed')
    off = offsets[-1]
    feed = Feed(name=str(side.get('name', bag.name)), sidecar=side, truth='fixture',
                start_ns=int(side.get('start_ns', 0)) + off,
                duration_s=float(side.get('duration_s', 0.0)), end_wall_ns=time.time_ns())
    if side.get('speech') and side.get('speech_end_ns'):
        feed.speech_start_ns = int(side['speech_start_ns']) + off
        feed.speech_end_ns = int(side['speech_end_ns']) + off
    if stats.messages == 0:
        raise GraphError(f'{bag}: no audio frames replayed')
    pad_to_block(observer, feed.start_ns, int(round(feed.duration_s * RATE)))
    return feed


GATE_BLOCK = 512          # the voice gate's VAD block (Silero: 512 samples at 16 kHz)


def pad_to_block(observer: Observer, start_ns: int, samples: int) -> int:
    """Let the microphone run on in silence up to a whole number of gate blocks.

    A bag's last frame is usually short. The voice gate re-blocks audio/in into 512-sample
    blocks and stamps each block from the stamp of its buffered remainder plus the sample
    count, so a remainder left over from one input would carry that input's clock into the
    next (after a gap the next input's stamps come out seconds early). A live microphone
    never stops, so this never happens there; here the remainder is completed with silence.
    """
    from wallie_common.conversions import audio_to_frame
    pad = (-samples) % GATE_BLOCK
    if pad and samples > 0:
        stamp = start_ns + samples * NS // RATE
        hiss = np.random.default_rng(samples).normal(0.0, 1e-4, pad)   # a mic's noise floor
        observer.audio_publisher().publish(audio_to_frame(
            hiss.astype(np.float32), RATE, stamp, frame_id='e2e_pad'))
    return pad


class EchoMic:
    """A simulated microphone: the player's output through an echo path, noise, the user.

    Publishes 32 ms AudioFrames on audio/in in real time (stamped with the capture time of
    their first sample, published when their last sample is due). What the player publishes
    on audio/playback (the audible reference, stamped with its audible time) comes back
    ``delay_ms`` later at ``gain``, with a weaker reflection, plus white noise at
    ``noise_db`` dBFS; :meth:`say` mixes the user's speech in at a given time.

    A real echo is there whether or not the player's reference has been published yet, but
    this microphone only knows what was played from that reference. So while a reply plays
    (from the player's FIRST_AUDIBLE to the audible end its FINISHED/FLUSHED reports: the
    event can overtake the last reference frames), a frame whose echo window the reference
    does not cover yet waits for it, up to ``ref_wait_s``; the frame then
    goes out late with its capture stamp, as a starved capture thread's would. Frames that
    still had to be made without their reference are counted in ``late_frames``.
    """

    def __init__(self, observer: Observer, delay_ms: float = 60.0, gain: float = 0.5,
                 noise_db: float = -55.0, seed: int = 0, ref_wait_s: float = 1.0) -> None:
        from wallie_audio.echo import ReferenceTimeline
        from wallie_common.conversions import audio_to_frame, frame_to_audio
        from wallie_common.qos import AUDIO_QOS, EVENT_QOS
        from wallie_interfaces.msg import AudioFrame, PlaybackEvent
        self._to_frame = audio_to_frame
        self._from_frame = frame_to_audio
        self.node = observer.node
        self.pub = self.node.create_publisher(AudioFrame, 'audio/in', AUDIO_QOS)
        self.timeline = ReferenceTimeline(20.0)
        self.lock = threading.Lock()
        self._sub = self.node.create_subscription(AudioFrame, 'audio/playback', self._on_ref,
                                                  AUDIO_QOS)
        self._evt = PlaybackEvent
        self._sub_events = self.node.create_subscription(PlaybackEvent, 'playback/events',
                                                         self._on_event, EVENT_QOS)
        self._playing: dict[str, tuple[int, int]] = {}  # reply -> audible (start, end | 0)
        self.ref_wait_s = ref_wait_s
        self._last_ref_mono = 0.0
        self.late_frames = 0
        self.delay = int(delay_ms * RATE / 1000)
        self.gain = gain
        self.noise = 10 ** (noise_db / 20)
        self._speech: list[tuple[int, np.ndarray]] = []   # (start stamp ns, samples)
        self.ref_frames = 0
        self.ref_lateness_ms: list[float] = []
        self.stop_event = threading.Event()
        self.rng = np.random.default_rng(seed)
        self.thread = threading.Thread(target=self._run, name='e2e-echo-mic', daemon=True)

    def _on_ref(self, msg: Any) -> None:
        a = self._from_frame(msg)
        with self.lock:
            self.timeline.write(a.mono, a.stamp_ns)
            self.ref_frames += 1
            self._last_ref_mono = time.monotonic()
            # > 0: the reference arrived after the time it says it became audible
            self.ref_lateness_ms.append((time.time_ns() - a.stamp_ns) / 1e6)
            del self.ref_lateness_ms[:-5000]

    def _on_event(self, msg: Any) -> None:
        from wallie_common import timeutil
        with self.lock:
            start = timeutil.from_msg(msg.first_audible)
            if msg.event == self._evt.FIRST_AUDIBLE:
                self._playing[msg.turn_id] = (start, 0)
                self._last_ref_mono = time.monotonic()      # its reference is due
                while len(self._playing) > 8:       # a lost FINISHED must not pin it
                    self._playing.pop(next(iter(self._playing)))
            elif msg.event in (self._evt.FINISHED, self._evt.FLUSHED) and start > 0:
                self._playing[msg.turn_id] = (start, start + int(msg.played_s * NS))

    def _echo_missing(self, t: int, n: int) -> bool:
        """The frame at `t` overlaps a playing reply whose reference has not arrived."""
        need = t + n * NS // RATE - self.delay * NS // RATE
        with self.lock:
            have = self.timeline.last_write_ns
            for sid, (start, end) in list(self._playing.items()):
                if end and have >= end:
                    del self._playing[sid]          # all of it arrived
            # a player silent for a second has stalled or lost its FINISHED: stop waiting
            if time.monotonic() - self._last_ref_mono >= 1.0:
                return False
            return any(need > start and have < (min(need, end) if end else need)
                       for start, end in self._playing.values())

    def start(self) -> 'EchoMic':
        self.thread.start()
        return self

    def say(self, samples: np.ndarray, at_ns: int | None = None,
            bounds_s: tuple[float, float] | None = None, name: str = 'speech') -> Feed:
        """Mix `samples` (16 kHz mono, int16 or float) in from `at_ns` (default: 0.2 s from
        now). Returns the feed with the speech bounds on the graph clock: `bounds_s` (start,
        end in seconds into `samples`, e.g. a fixture's truth) or estimated from the audio."""
        x = np.asarray(samples)
        if x.ndim > 1:
            x = x.mean(axis=1)
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        x = x.astype(np.float32)
        at = time.time_ns() + 200_000_000 if at_ns is None else int(at_ns)
        with self.lock:
            self._speech.append((at, x))
        feed = Feed(name=name, start_ns=at, duration_s=x.shape[0] / RATE,
                    truth='fixture' if bounds_s else 'estimate')
        b = bounds_s or speech_bounds(x)
        if b is not None:
            feed.speech_start_ns = at + int(b[0] * NS)
            feed.speech_end_ns = at + int(b[1] * NS)
        feed.end_wall_ns = at + int(feed.duration_s * NS)
        return feed

    def say_fixture(self, fixture: Mapping[str, Any], at_ns: int | None = None) -> Feed:
        """Mix a fixture bag's audio in (its sidecar's speech bounds are the truth)."""
        from wallie import bags
        audio = bags.read_audio_bag(fixture['bag_path'])
        if audio.rate != RATE:
            raise GraphError(f'{fixture["name"]}: {audio.rate} Hz (expected {RATE})')
        bounds = None
        if fixture.get('speech') and fixture.get('speech_end_s') is not None:
            bounds = (float(fixture['speech_start_s']), float(fixture['speech_end_s']))
        feed = self.say(audio.samples, at_ns, bounds, name=str(fixture.get('name', 'fixture')))
        feed.sidecar = dict(fixture)
        return feed

    def _run(self) -> None:
        n = RATE * FRAME_MS // 1000
        t = time.time_ns() - FRAME_MS * 1_000_000
        seq = 0
        while not self.stop_event.is_set():
            wait = (t + FRAME_MS * 1_000_000 - time.time_ns()) / NS
            if wait > 0 and self.stop_event.wait(wait):
                return
            deadline = time.monotonic() + self.ref_wait_s
            while self._echo_missing(t, n) and time.monotonic() < deadline:
                if self.stop_event.wait(0.005):
                    return
            self.late_frames += self._echo_missing(t, n)
            idx = self.timeline.index(t)
            with self.lock:
                ref = self.timeline.read(idx - self.delay, n)
                tail = self.timeline.read(idx - self.delay - 120, n)
                speech = list(self._speech)
            x = self.gain * (ref + 0.3 * tail) + self.rng.normal(0, self.noise, n)
            for at, s in speech:
                off = (t - at) * RATE // NS
                if -n < off < s.shape[0]:
                    lo, hi = max(0, off), min(s.shape[0], off + n)
                    seg = np.zeros(n, np.float32)
                    seg[lo - off:hi - off] = s[lo:hi]
                    x = x + seg
            with self.lock:
                self._speech = [(a, s) for a, s in self._speech
                                if (t - a) * RATE // NS < s.shape[0]]
            seq += 1
            self.pub.publish(self._to_frame(np.clip(x, -1, 1).astype(np.float32), RATE, t,
                                            seq=seq, frame_id='echo_mic'))
            t += FRAME_MS * 1_000_000

    def close(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(2.0)
        try:
            self.node.destroy_subscription(self._sub)
            self.node.destroy_subscription(self._sub_events)
            self.node.destroy_publisher(self.pub)
        except Exception:
            pass


# ---------------------------------------------------------------------------- results
def _finite(x: float) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class TurnResult:
    """One turn as the user experienced it: what was heard, said, and how fast."""

    record: TurnRecord | None
    feed: Feed | None
    answer: np.ndarray | None = None       # int16 samples the player played (file sink)
    answer_rate: int = 0
    other_turns: list[TurnRecord] = field(default_factory=list)  # e.g. a split question

    @property
    def turn_id(self) -> str:
        return self.record.turn_id if self.record else ''

    @property
    def answered(self) -> bool:
        return bool(self.record and self.record.audible)

    @property
    def transcript(self) -> str:
        return self.record.transcript if self.record else ''

    @property
    def reply_text(self) -> str:
        return self.record.reply_text if self.record else ''

    @property
    def answer_s(self) -> float:
        if self.answer is None or not self.answer_rate:
            return 0.0
        return self.answer.shape[0] / self.answer_rate

    def stamps(self) -> dict[str, int]:
        """Stage stamps of the turn (the first_audible from the playback event if needed)."""
        if self.record is None:
            return {}
        st = dict(self.record.stamps)
        fa = self.record.playback.get('first_audible', {}).get('first_audible_ns', 0)
        if fa and 'first_audible' not in st:
            st['first_audible'] = fa
        return st

    def timeline_ms(self) -> dict[str, float]:
        """Each stage stamp in ms after the input's true speech end ({} if unknown)."""
        truth = self.feed.speech_end_ns if self.feed else 0
        if not truth:
            return {}
        events = dict(self.stamps())
        if self.record is not None:
            for a in self.record.activity:          # the last of each kind
                events[f'gate_{a["event"]}'] = a['stamp_ns']
            for t in self.record.transcripts:
                kind = ('final' if t['is_final'] else 'early_final' if t['is_early_final']
                        else 'partial')
                events.setdefault(f'asr_{kind}_received', t['recv_ns'])
                if kind == 'partial':
                    events['asr_last_partial_received'] = t['recv_ns']
        return {k: round((v - truth) / 1e6, 1) for k, v in
                sorted(events.items(), key=lambda kv: kv[1]) if v}

    def latencies(self) -> dict[str, float]:
        """Milliseconds per stage (NaN where unknown).

        ``*_ms`` keys follow TurnMetrics (from the gate's VAD speech end); ``true_*`` keys
        start at the input's real acoustic end of speech (exact for fixtures).
        """
        from wallie.turn_metrics import ms_between
        st = self.stamps()
        out = {key: ms_between(st, a, b) for key, _, a, b in SEGMENTS + EXTRA}
        truth = self.feed.speech_end_ns if self.feed else 0
        nan = float('nan')
        if truth:
            fa, ep, vad = st.get('first_audible', 0), st.get('endpoint', 0), \
                st.get('speech_end', 0)
            out['true_e2e_ms'] = (fa - truth) / 1e6 if fa else nan
            out['true_endpoint_ms'] = (ep - truth) / 1e6 if ep else nan
            out['vad_end_error_ms'] = (vad - truth) / 1e6 if vad else nan
        else:
            out['true_e2e_ms'] = out['true_endpoint_ms'] = out['vad_end_error_ms'] = nan
        return out

    def to_dict(self) -> dict[str, Any]:
        lat = self.latencies()
        rec = self.record
        return {
            'turn_id': self.turn_id,
            'input': self.feed.name if self.feed else '',
            'truth': self.feed.truth if self.feed else '',
            'transcript': self.transcript,
            'reply': self.reply_text,
            'reply_chunks': rec.reply_chunks if rec else [],
            'answered': self.answered,
            'interrupted': bool(rec and rec.interrupted),
            'answer_s': round(self.answer_s, 3),
            'latency_ms': {k: (round(v, 1) if _finite(v) else None) for k, v in lat.items()},
            'metrics': rec.metrics if rec else None,
            'split_turns': len(self.other_turns),
        }


# ---------------------------------------------------------------------------- the graph
@dataclass
class GraphOptions:
    """How to run the graph headless."""

    profile: str | None = 'cpu'           # parameter profile (None: config.toml / cpu)
    wake_engine: str = 'none'             # voice_gate wake.engine ('none': every utterance)
    wake_word: str | None = None          # voice_gate wake.word (None: the configured one)
    capture: str = 'skip'                 # 'skip' (this process feeds audio/in) or 'file'
    input_path: str = ''                  # capture='file': the WAV the capture node plays
    sink: str = 'file'                    # player sink: 'file' or 'null'
    sink_path: str = ''                   # sink='file': '' = <run dir>/playback.wav
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> overrides
    user_config: bool = True              # apply config.toml and WALLIE_* variables
    run_dir: str | None = None            # None: a fresh ~/.wallie_voice_bot/run/<time>-<pid>
    domain_id: int | None = None          # None: a random private domain
    log_level: str | None = None
    metrics: bool = True                  # run the metrics node (TurnMetrics, JSONL log)
    home: str | None = None               # WALLIE_HOME for the nodes (None: inherited)
    env: dict[str, str] = field(default_factory=dict)
    stop_timeout_s: float = 10.0


class LiveGraph:
    """The real graph as processes (same bring-up as ``wallie up``) plus an Observer."""

    def __init__(self, options: GraphOptions | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.options = options or GraphOptions()
        self.echo = echo or (lambda line: None)
        self.prep: Any = None
        self.observer: Observer | None = None
        self.events: list[tuple[str, str, dict]] = []
        self.wav: WavTail | None = None
        self.domain_id = 0
        self.t_start = 0.0
        self.ready_after_s: float | None = None
        self._sup: Any = None
        self._sup_thread: threading.Thread | None = None
        self._sup_stop = threading.Event()
        self._sup_started = threading.Event()
        self._sup_error: BaseException | None = None
        self.exit_codes: dict[str, int | None] = {}

    # -- configuration -------------------------------------------------------------------------
    def cli_params(self, run_dir: Path) -> dict[str, dict[str, Any]]:
        o = self.options
        out: dict[str, dict[str, Any]] = {}
        gate = out.setdefault('voice_gate', {})
        gate['wake.engine'] = o.wake_engine
        if o.wake_word is not None:
            gate['wake.word'] = o.wake_word
        if o.sink == 'file':
            path = Path(o.sink_path or run_dir / 'playback.wav').expanduser().resolve()
            out['player'] = {'sink': 'file', 'file_path': str(path)}
        elif o.sink == 'null':
            out['player'] = {'sink': 'null'}
        else:
            raise GraphError(f'sink {o.sink!r}: use file or null')
        if o.capture == 'file':
            if not o.input_path:
                raise GraphError("capture='file' needs input_path")
            out['capture'] = {'source': 'file', 'file.path': str(Path(o.input_path).resolve()),
                              'file.realtime': True, 'file.loop': False,
                              'file.lead_silence_s': 0.0}
        elif o.capture != 'skip':
            raise GraphError(f'capture {o.capture!r}: use skip or file')
        for node, values in o.params.items():
            out.setdefault(node, {}).update(values)
        return out

    def _env(self) -> dict[str, str]:
        from wallie_common.runtime import apply_privacy_env
        env = dict(os.environ)
        env.update(self.options.env)
        env['ROS_DOMAIN_ID'] = str(self.domain_id)
        env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        if self.options.home:
            env['WALLIE_HOME'] = str(Path(self.options.home).expanduser())
        env['PYTHONUNBUFFERED'] = '1'
        apply_privacy_env(env)
        return env

    # -- start / stop -------------------------------------------------------------------------
    def start(self) -> 'LiveGraph':
        from wallie import bringup
        from wallie import config as wconfig
        o = self.options
        self.t_start = time.monotonic()
        self.domain_id = o.domain_id if o.domain_id is not None else free_domain_id()
        env = self._env()
        run_dir = bringup.make_run_dir(o.run_dir)
        for stale in ('state.json', 'playback.wav'):      # a reused run directory
            try:
                (run_dir / stale).unlink()
            except FileNotFoundError:
                pass
        if o.user_config:
            run_cfg = wconfig.RunConfig(profile=o.profile, cli_params=self.cli_params(run_dir),
                                        environ=env)
        else:
            clean = {k: v for k, v in env.items()
                     if not k.startswith(wconfig.ENV_PREFIX) or k in wconfig.NON_CONFIG_ENV}
            run_cfg = wconfig.RunConfig(profile=o.profile or 'cpu',
                                        cli_params=self.cli_params(run_dir), environ=clean,
                                        config_file=str(run_dir / 'no-config.toml'),
                                        create_config=False)
        skip = []
        if o.capture == 'skip':
            skip.append('capture')
        if not o.metrics:
            skip.append('metrics')
        try:
            self.prep = bringup.prepare(run_cfg, skip=skip, run_dir=run_dir,
                                        log_level=o.log_level)
        except (wconfig.ConfigError, bringup.BringupError, ValueError) as exc:
            raise GraphError(str(exc)) from None
        errors, warnings = check_models(self.prep.resolved.params)
        for w in self.prep.resolved.warnings + warnings:
            self.echo(f'warning: {w}')
        if errors:
            raise GraphError('\n'.join(errors))
        procs = [dataclasses.replace(p, env=env) for p in self.prep.procs]
        player = wconfig.for_node(self.prep.resolved.params, 'player')
        if player.get('sink') == 'file':
            self.wav = WavTail(player['file_path'])
        self.observer = Observer(self.domain_id, watch_audio_in=o.capture == 'file')
        if o.capture == 'skip':
            self.observer.audio_publisher()
        self._sup_thread = threading.Thread(target=self._supervise, args=(procs,),
                                            name='e2e-supervisor', daemon=True)
        self._sup_thread.start()
        self._sup_started.wait(30.0)
        if self._sup_error is not None:
            raise GraphError(f'cannot start the graph: {self._sup_error}')
        self.echo(f'graph starting: {len(procs)} processes, ROS domain {self.domain_id}, '
                  f'run directory {self.run_dir}')
        return self

    def _on_event(self, kind: str, name: str, details: dict) -> None:
        self.events.append((kind, name, details))
        if kind in ('exited', 'gave_up', 'failed', 'kill'):
            self.echo(f'{name}: {kind} {details}')

    def _supervise(self, procs: list[Any]) -> None:
        """Start, watch and stop the processes from ONE thread: children get
        PR_SET_PDEATHSIG, which fires when the thread that forked them ends."""
        from wallie import graph as wgraph
        from wallie.supervisor import Supervisor
        try:
            mp = self.prep.resolved.params.get(wgraph.MANAGER, {})
            self._sup = Supervisor(procs, self.run_dir, self._on_event,
                                   max_restarts=int(mp.get('restart.max_restarts', 5)),
                                   window_s=float(mp.get('restart.window_s', 120.0)),
                                   backoff_max_s=float(mp.get('restart.backoff_max_s', 30.0)))
            self._sup.start()
        except BaseException as exc:  # reported by start()
            self._sup_error = exc
            self._sup_started.set()
            return
        self._sup_started.set()
        try:
            while not self._sup_stop.wait(0.1):
                self._sup.poll()
        finally:
            self.exit_codes = self._sup.stop(first=[wgraph.MANAGER], first_timeout_s=5.0,
                                             timeout_s=self.options.stop_timeout_s)

    @property
    def run_dir(self) -> Path:
        return Path(self.prep.run_dir)

    def alive(self) -> list[str]:
        return self._sup.alive() if self._sup is not None else []

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.run_dir / 'logs' / f'{name}.log'
        try:
            return path.read_text(errors='replace')[-chars:]
        except OSError:
            return ''

    def logs_report(self, names: Iterable[str] | None = None, chars: int = 2500) -> str:
        names = list(names) if names is not None else sorted(
            p.stem for p in (self.run_dir / 'logs').glob('*.log'))
        return '\n'.join(f'--- {n} ---\n{self.log_tail(n, chars)}' for n in names)

    def state_file(self) -> dict[str, Any]:
        try:
            return json.loads((self.run_dir / 'state.json').read_text())
        except (OSError, ValueError, TypeError):
            return {}

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Block until the manager reports every stage active; return seconds since start."""
        assert self.observer is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.observer.state.get('ready') or self.state_file().get('ready'):
                self.ready_after_s = time.monotonic() - self.t_start
                self.echo(f'graph ready after {self.ready_after_s:.1f} s')
                return self.ready_after_s
            dead = [(k, n, d) for k, n, d in self.events if k in ('gave_up', 'failed')]
            if dead:
                raise GraphError(f'{dead[0][1]} could not run ({dead[0][0]}: {dead[0][2]})\n'
                                 + self.logs_report([dead[0][1], 'manager']))
            failed = {name: st for name, st in self.state_file().get('stages', {}).items()
                      if isinstance(st, dict) and st.get('phase') == 'failed'}
            if failed:
                name, st = next(iter(failed.items()))
                raise GraphError(f'stage {name} failed to come up: {st.get("detail")}\n'
                                 + self.logs_report([name, 'manager']))
            if self._sup_thread is not None and not self._sup_thread.is_alive():
                raise GraphError('the supervisor stopped')
            time.sleep(0.1)
        state = self.state_file()
        raise GraphError(f'the graph was not ready within {timeout:.0f} s '
                         f'(manager state: {state.get("state")}: {state.get("detail")})\n'
                         + self.logs_report())

    def stop(self) -> dict[str, int | None]:
        """Stop every process (manager first: it deactivates the stages in order)."""
        if self._sup_thread is not None:
            self._sup_stop.set()
            self._sup_thread.join(self.options.stop_timeout_s + 30.0)
            self._sup_thread = None
        if self.observer is not None:
            self.observer.close()
            self.observer = None
        return self.exit_codes

    def __enter__(self) -> 'LiveGraph':
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- turns -------------------------------------------------------------------------------
    def wait_idle(self, timeout: float = 60.0, quiet_s: float = 1.0) -> bool:
        """Wait until no reply is being generated or played and nothing happened for
        `quiet_s` (so one turn cannot leak into the next)."""
        assert self.observer is not None
        obs = self.observer

        def idle() -> bool:
            turns = list(obs.turns.values())
            if any((t.audible and not t.playback_over) or (t.chunks and not t.reply_done)
                   for t in turns):
                return False
            last = max([t.last_event_ns for t in turns] + [0])
            return time.time_ns() - last > quiet_s * NS
        return bool(obs.wait(idle, timeout))

    def wav_mark(self) -> int:
        return self.wav.samples() if self.wav is not None else 0

    def wait_turn(self, since_ns: int, feed: Feed | None = None, *, expect_reply: bool = True,
                  timeout: float = 60.0, quiet_s: float = 4.0, metrics_wait_s: float = 3.0,
                  wav_start: int = 0) -> TurnResult:
        """Collect the turn(s) the graph opened after `since_ns` until the reply is over.

        With a reply expected: returns once the answered turn's playback finished (or was
        flushed) and its TurnMetrics arrived (or `metrics_wait_s` passed), or when every turn
        opened turned out unanswerable (empty/discarded) and nothing happened for `quiet_s`,
        or at `timeout`. Without: waits until `quiet_s` passed with no new event after the
        input ended (and no reply in progress).
        """
        assert self.observer is not None
        obs = self.observer
        t_end = time.monotonic() + timeout
        feed_end = feed.end_wall_ns if feed and feed.end_wall_ns else time.time_ns()

        def status() -> str:
            turns = obs.turns_since(since_ns)
            now = time.time_ns()
            last = max([t.last_event_ns for t in turns] + [feed_end])
            if any(t.playback_over for t in turns if t.audible):
                return 'answered'
            busy = any(t.chunks or (t.final and t.final['text'].strip()) for t in turns
                       if not t.playback_over)
            if not busy and now - last > quiet_s * NS and now > feed_end:
                if not expect_reply or not turns or all(t.unanswered for t in turns):
                    return 'quiet'
            return ''

        outcome = ''
        while time.monotonic() < t_end:
            outcome = obs.wait(status, min(0.5, max(0.0, t_end - time.monotonic())))
            if outcome:
                break
        turns = obs.turns_since(since_ns)
        answered = [t for t in turns if t.audible]
        main = answered[0] if answered else None
        if main is None:
            with_final = [t for t in turns if t.final is not None]
            candidates = with_final or [t for t in turns if t.ended] or turns
            main = candidates[0] if candidates else None
        if main is not None and main.audible:
            obs.wait(lambda: main.metrics is not None, metrics_wait_s)
        result = TurnResult(main, feed, other_turns=[t for t in turns if t is not main])
        if self.wav is not None and main is not None and main.audible:
            # the player writes in real time: everything up to FINISHED is in the file
            result.answer = self.wav.read(wav_start)
            result.answer_rate = self.wav.rate
        return result

    def ask_bag(self, bag: str | os.PathLike, *, expect_reply: bool = True,
                timeout: float = 60.0, quiet_s: float = 4.0) -> TurnResult:
        """Replay a fixture bag as the microphone and return the turn it caused."""
        assert self.observer is not None
        wav_start = self.wav_mark()
        since = time.time_ns()
        feed = replay_bag(self.observer, bag)
        return self.wait_turn(since, feed, expect_reply=expect_reply, timeout=timeout,
                              quiet_s=quiet_s, wav_start=wav_start)

    def ask_mic(self, mic: 'EchoMic', fixture: Mapping[str, Any], *,
                expect_reply: bool = True, timeout: float = 60.0,
                quiet_s: float = 4.0) -> TurnResult:
        """Say a fixture into a running EchoMic and return the turn it caused."""
        wav_start = self.wav_mark()
        since = time.time_ns()
        feed = mic.say_fixture(fixture)
        return self.wait_turn(since, feed, expect_reply=expect_reply, timeout=timeout,
                              quiet_s=quiet_s, wav_start=wav_start)

    def capture_feed(self, prepared: PreparedInput, timeout: float = 20.0) -> Feed:
        """capture='file': the file's timeline on the graph clock (from the first frame)."""
        assert self.observer is not None
        obs = self.observer
        first = obs.wait(lambda: obs.audio_in_first, timeout)
        if not first:
            raise GraphError('the capture node published no audio/in frame\n'
                             + self.log_tail('capture'))
        seq, stamp = first
        t0 = stamp - (seq - 1) * FRAME_MS * 1_000_000      # the capture node counts from 1
        return Feed(name=prepared.path.name, start_ns=t0, duration_s=prepared.duration_s,
                    speech_start_ns=t0 + int(prepared.speech_start_s * NS),
                    speech_end_ns=t0 + int(prepared.speech_end_s * NS), truth='estimate',
                    end_wall_ns=t0 + int(prepared.duration_s * NS))


# ---------------------------------------------------------------------------- preflight
def check_models(params: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for models of the merged parameters missing from the model store.

    Only model-store ids of the manifest are checked (paths and Hugging Face ids are the
    engines' business); a missing Piper voice is a warning (the TTS falls back to espeak-ng).
    """
    from wallie import config as wconfig
    try:
        from wallie_common import model_store
        manifest = model_store.load_manifest()
    except Exception:  # no manifest: nothing to check against
        return [], []
    asr = wconfig.for_node(params, 'asr')
    llm = wconfig.for_node(params, 'llm')
    tts = wconfig.for_node(params, 'tts')
    gate = wconfig.for_node(params, 'voice_gate')
    wanted: list[tuple[str, str, bool]] = [   # (model id, explicit path, fatal)
        ('silero-vad-v6', str(gate.get('vad.model_path', '')), True),
        (str(asr.get('asr.model', 'whisper-tiny.en')), '', True),
    ]
    if llm.get('llm.engine', 'llama_cpp') == 'llama_cpp':
        wanted.append((str(llm.get('llm.model', 'qwen2.5-0.5b-instruct')),
                       str(llm.get('llm.model_path', '')), True))
    if tts.get('tts.engine', 'piper') == 'piper':
        wanted.append((str(tts.get('tts.piper.voice', 'piper-en_US-joe-medium')),
                       str(tts.get('tts.piper.model_path', '')), False))
    errors: list[str] = []
    warnings: list[str] = []
    for model_id, explicit, fatal in wanted:
        if not model_id or explicit or manifest.find(model_id) is None:
            continue
        try:
            model_store.resolve(model_id, manifest=manifest)
        except model_store.ModelNotFoundError as exc:
            (errors if fatal else warnings).append(str(exc))
    return errors, warnings


# ---------------------------------------------------------------------------- one-shot turn
@dataclass
class AskOutcome:
    result: TurnResult
    ready_s: float
    run_dir: Path
    output: Path | None
    exit_codes: dict[str, int | None]


def ask_wav(question: str | os.PathLike, output: str | os.PathLike | None,
            options: GraphOptions | None = None, timeout: float = 90.0,
            ready_timeout: float = 300.0,
            echo: Callable[[str], None] | None = None) -> AskOutcome:
    """One spoken turn through the whole graph: the capture node plays `question` (any
    format soundfile reads, padded with silence), the player writes what it says; the answer
    is copied to `output` (16-bit WAV at the player's rate)."""
    from wallie import bringup
    options = dataclasses.replace(options or GraphOptions(), capture='file', sink='file')
    run_dir = bringup.make_run_dir(options.run_dir)
    options.run_dir = str(run_dir)
    prepared = prepare_input(question, run_dir / 'question_16k.wav')
    options.input_path = str(prepared.path)
    graph = LiveGraph(options, echo=echo)
    out_path: Path | None = None
    try:
        graph.start()
        ready = graph.wait_ready(ready_timeout)
        feed = graph.capture_feed(prepared)
        result = graph.wait_turn(0, feed, timeout=timeout + prepared.duration_s)
        if output is not None and result.answer is not None and result.answer.size:
            out_path = write_wav(output, result.answer, result.answer_rate)
    finally:
        codes = graph.stop()
    return AskOutcome(result, ready, run_dir, out_path, codes)


# ---------------------------------------------------------------------------- text checks
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def contains_fact(text: str, facts: Sequence[str]) -> bool:
    """True if any expected fact (a word or phrase) occurs as whole words in `text`."""
    w = ' ' + ' '.join(words(text)) + ' '
    return any(' ' + ' '.join(words(f)) + ' ' in w for f in facts if words(f))


def repo_root() -> Path | None:
    """The source checkout this package runs from (None for an installed package)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / 'tests' / 'fixtures' / 'manifest.json').is_file():
            return parent
    return None


def default_fixtures_dir() -> Path | None:
    root = repo_root()
    return root / 'tests' / 'fixtures' if root else None


def load_manifest(fixtures_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The fixture entries of ``<dir>/manifest.json`` with absolute bag paths."""
    d = Path(fixtures_dir)
    try:
        data = json.loads((d / 'manifest.json').read_text())
    except (OSError, ValueError) as exc:
        raise GraphError(f'{d}/manifest.json: {exc}') from None
    out = []
    for f in data.get('fixtures', []):
        f = dict(f)
        f['bag_path'] = str(d / f['bag'])
        out.append(f)
    return out


def temp_home() -> Path:
    """A private WALLIE_HOME for tools that must not touch the user's logs."""
    return Path(tempfile.mkdtemp(prefix='wallie-home-'))


def remove_tree(path: str | os.PathLike) -> None:
    shutil.rmtree(path, ignore_errors=True)
