"""The `metrics` node: per-turn latency records, Prometheus, the JSONL log, health summary.

Inputs: ``metrics/stamps`` (StageStamp from every stage), ``playback/events`` (the end of a
reply), ``voice/activity`` (discarded turns, acoustic speech end), ``voice/wake``,
``/diagnostics`` (every node's health) and, only with ``archive.enabled``, ``transcript``
and ``reply`` (text kept for the turn's archive file).
Outputs: ``metrics/turn`` (one TurnMetrics per turn), ``diagnostics_agg`` (the latest
status of every node, stale ones marked), the JSONL log, and, opt-in, a Prometheus endpoint
on 127.0.0.1 only.

The node is passive infrastructure: it activates itself at start-up (``autostart`` defaults
to true here) so that it records from the first turn on.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from wallie_common import params as P
from wallie_common import timeutil
from wallie_common.node_base import DIAGNOSTICS_TOPIC, StageNode
from wallie_common.qos import EVENT_QOS
from wallie_common.runtime import main_for
from wallie_interfaces.msg import (
    PlaybackEvent,
    ReplyChunk,
    StageStamp,
    Transcript,
    TurnMetrics,
    VoiceActivity,
    WakeWord,
)
from wallie_manager import privacy
from wallie_manager import turn_metrics as tm
from wallie_manager.jsonl_log import JsonlLog

# Every stage stamps the same turn within milliseconds: a deep reliable queue so that a
# burst is never cut by KEEP_LAST (compatible with the stages' EVENT_QOS publishers).
STAMP_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500,
                       reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)
PROMETHEUS_ADDRESS = '127.0.0.1'   # never configurable: the endpoint is loopback only
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6,
                     0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
# Prometheus stage label -> duration key of the joined turn.
STAGE_HISTOGRAMS = {
    'endpoint': 'endpoint_ms', 'asr': 'asr_ms', 'llm_first_token': 'llm_first_token_ms',
    'llm_first_chunk': 'llm_first_chunk_ms', 'tts_first_audio': 'tts_first_audio_ms',
    'playout': 'playout_ms', 'flush': 'flush_ms',
}
E2E_HISTOGRAMS = {'speech_end': 'e2e_ms', 'endpoint': 'e2e_from_endpoint_ms'}
LEVEL_NAMES = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}
STALE = 3
MAX_DIAG_STATUSES = 64     # statuses read from one DiagnosticArray
MAX_TRACKED_NODES = 256
TICK_S = 0.1
BAD_INPUT_WARN_S = 10.0    # own status is WARN this long after a rejected input


class Prometheus:
    """The opt-in metrics endpoint: a private registry served on 127.0.0.1."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage = Histogram('wallie_stage_latency_seconds',
                               'Latency of one pipeline stage per turn.', ['stage'],
                               buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.e2e = Histogram('wallie_e2e_latency_seconds',
                             'First audible reply sample minus acoustic speech end '
                             '(from="speech_end") or endpoint decision (from="endpoint").',
                             ['from'], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.turns = Counter('wallie_turns', 'Completed turns by outcome.', ['outcome'],
                             registry=self.registry)
        self.wakes = Counter('wallie_wake_words', 'Wake word detections.', ['engine'],
                             registry=self.registry)
        self.health = Gauge('wallie_node_health',
                            'Latest diagnostics level per node (0 OK, 1 WARN, 2 ERROR, '
                            '3 stale).', ['node'], registry=self.registry)
        for label in STAGE_HISTOGRAMS:
            self.stage.labels(stage=label)
        for label in E2E_HISTOGRAMS:
            self.e2e.labels(**{'from': label})
        self._server = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def observe(self, turn: tm.CompletedTurn) -> None:
        for label, key in STAGE_HISTOGRAMS.items():
            value = turn.durations.get(key, math.nan)
            if math.isfinite(value):
                self.stage.labels(stage=label).observe(max(0.0, value) / 1000.0)
        for label, key in E2E_HISTOGRAMS.items():
            value = turn.durations.get(key, math.nan)
            if math.isfinite(value):
                self.e2e.labels(**{'from': label}).observe(max(0.0, value) / 1000.0)
        self.turns.labels(outcome=turn.outcome).inc()

    def start(self, port: int) -> None:
        from prometheus_client import start_http_server
        self.stop()
        self._server, self._thread = start_http_server(port, addr=PROMETHEUS_ADDRESS,
                                                       registry=self.registry)
        self.port = int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(2.0)
        self._server = None
        self._thread = None
        self.port = 0

    @property
    def running(self) -> bool:
        return self._server is not None


class MetricsNode(StageNode):
    """Joins stage stamps into one TurnMetrics per turn; Prometheus, JSONL log, archive."""

    PARAMS = (
        P.Param('autostart', True, 'Configure and activate at start-up (the metrics node '
                'records from the first turn; the manager may still drive it).',
                read_only=True),
        P.Param('prometheus.enabled', False, 'Serve Prometheus metrics on '
                'http://127.0.0.1:<prometheus.port>/metrics (loopback only).'),
        P.Param('prometheus.port', 9090, 'TCP port of the Prometheus endpoint '
                '(0 = any free port, reported in diagnostics).', min=0, max=65535),
        P.Param('home_dir', '', 'Wallie home for logs and archive; empty = $WALLIE_HOME or '
                '~/.wallie_voice_bot.', read_only=True),
        P.Param('log.enabled', True, 'Write the JSONL log <home>/logs/wallie.jsonl.',
                read_only=True),
        P.Param('log.max_bytes', privacy.DEFAULT_LOG_MAX_BYTES, 'Rotate the JSONL log at '
                'this size (bytes).', min=65536, max=1 << 30, read_only=True),
        P.Param('log.backup_count', privacy.DEFAULT_LOG_BACKUPS, 'Rotated JSONL files kept.',
                min=1, max=100, read_only=True),
        P.Param('archive.enabled', False, 'Write each turn\'s transcript and reply to '
                '<home>/archive (private files).'),
        P.Param('archive.retention_h', privacy.DEFAULT_RETENTION_H, 'Delete archive files '
                'older than this (hours; 0 = keep).', min=0.0, max=24.0 * 3650),
        P.Param('archive.purge_period_s', privacy.DEFAULT_PURGE_PERIOD_S, 'How often old '
                'archive files are purged (seconds).', min=1.0, max=86400.0),
        P.Param('metrics.turn_timeout_s', 30.0, 'Complete a turn with nothing audible after '
                'this long without a new stamp (seconds).', min=0.1, max=3600.0),
        P.Param('metrics.playback_timeout_s', 120.0, 'Complete an audible turn without an '
                'end-of-playback event after this long (seconds).', min=0.1, max=3600.0),
        P.Param('metrics.settle_ms', 300, 'Wait this long after the end of a reply for '
                'stamps still in flight (milliseconds).', min=0, max=10000),
        P.Param('metrics.interrupt_grace_s', 2.0, 'Complete a turn interrupted before it was '
                'audible after this long (seconds).', min=0.0, max=60.0),
        P.Param('metrics.max_open_turns', 256, 'Open turns tracked at once (oldest dropped).',
                min=1, max=100000),
        P.Param('diagnostics.stale_s', 5.0, 'A node whose diagnostics are older than this '
                'is reported stale (seconds).', min=0.5, max=3600.0),
    )

    def __init__(self) -> None:
        super().__init__('metrics')
        self._lock = threading.Lock()
        self._joiner = tm.TurnJoiner(self._joiner_config())
        self._jsonl: JsonlLog | None = None
        self._archive: privacy.TranscriptArchive | None = None
        self._prom: Prometheus | None = None
        self._turn_pub = None
        self._agg_pub = None
        self._inputs: list[Any] = []
        self._text_subs: list[Any] = []
        self._periodic: list[Any] = []
        self._fast_tick: Any = None
        self._health: dict[str, tuple[DiagnosticStatus, float]] = {}
        self._levels: dict[str, int] = {}
        self._turns_published = 0
        self._last_purge = 0.0
        self._last_bad_s = -1e9
        self._last_bad_what = ''
        self._fault = ''
        self._home = privacy.home_dir(self.params['home_dir'] or None)
        self.diag.ok('created')

    def _joiner_config(self) -> tm.JoinerConfig:
        p = self.params
        return tm.JoinerConfig(
            turn_timeout_s=p['metrics.turn_timeout_s'],
            playback_timeout_s=p['metrics.playback_timeout_s'],
            settle_s=p['metrics.settle_ms'] / 1000.0,
            interrupt_grace_s=p['metrics.interrupt_grace_s'],
            max_open_turns=p['metrics.max_open_turns'])

    # -- lifecycle --------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            privacy.ensure_private_dir(self._home)
            if self.params['log.enabled']:
                self._jsonl = JsonlLog(privacy.log_file(self._home),
                                       self.params['log.max_bytes'],
                                       self.params['log.backup_count'])
        except OSError as exc:
            self.get_logger().error(f'cannot write under {self._home}: {exc}')
            self.diag.error(f'cannot write under {self._home}: {exc.strerror or exc}')
            return TransitionCallbackReturn.FAILURE
        self._archive = privacy.TranscriptArchive(privacy.archive_dir(self._home),
                                                  self.params['archive.enabled'])
        self._purge()
        self._turn_pub = self.create_lifecycle_publisher(TurnMetrics, 'metrics/turn',
                                                         EVENT_QOS)
        self._agg_pub = self.create_publisher(DiagnosticArray, 'diagnostics_agg', 10)
        self.get_logger().info(
            f'configured: log {privacy.log_file(self._home) if self._jsonl else "off"}, '
            f'archive {"on" if self._archive.enabled else "off"} '
            f'(retention {self.params["archive.retention_h"]} h), '
            f'prometheus {"on" if self.params["prometheus.enabled"] else "off"}')
        self.diag.ok('configured', home=self._home, archive=self._archive.enabled)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._inputs = [
            self.create_subscription(StageStamp, 'metrics/stamps', self._on_stamp, STAMP_QOS),
            self.create_subscription(PlaybackEvent, 'playback/events', self._on_playback,
                                     EVENT_QOS),
            self.create_subscription(VoiceActivity, 'voice/activity', self._on_activity,
                                     EVENT_QOS),
            self.create_subscription(WakeWord, 'voice/wake', self._on_wake, EVENT_QOS),
            self.create_subscription(Transcript, 'transcript', self._on_transcript, EVENT_QOS),
            self.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics,
                                     50),
        ]
        self._set_archive_subs(self._archive is not None and self._archive.enabled)
        # The fast tick runs only while a turn is open (turn news restarts it); an idle
        # node then wakes once a second, for the aggregate (which also ticks).
        self._fast_tick = self.create_timer(TICK_S, self._tick)
        self._fast_tick.cancel()
        self._periodic = [self._fast_tick, self.create_timer(1.0, self._publish_aggregate)]
        if self.params['prometheus.enabled']:
            self._start_prometheus(self.params['prometheus.port'])
        self.diag.ok('active')
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._teardown_io()
        self.diag.warn('inactive')
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._teardown_io()
        self._close()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        with self._lock:
            done = self._joiner.flush_all()
        for turn in done:
            self._finish(turn)
        self._teardown_io()
        self._close()
        return TransitionCallbackReturn.SUCCESS

    def _turn_news(self) -> None:
        """A turn may be open now: tick fast until none is (caller holds self._lock)."""
        tick = self._fast_tick
        if tick is not None and tick.is_canceled():
            tick.reset()

    def _teardown_io(self) -> None:
        for sub in self._inputs + self._text_subs:
            self.destroy_subscription(sub)
        for timer in self._periodic:
            self.destroy_timer(timer)
        self._inputs, self._text_subs, self._periodic = [], [], []
        self._fast_tick = None
        if self._prom is not None:
            self._prom.stop()

    def _close(self) -> None:
        if self._turn_pub is not None:
            self.destroy_lifecycle_publisher(self._turn_pub)
            self._turn_pub = None
        if self._agg_pub is not None:
            self.destroy_publisher(self._agg_pub)
            self._agg_pub = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    # -- parameters -------------------------------------------------------------------
    def on_params_changed(self, changed: dict[str, Any]) -> None:
        if any(k.startswith('metrics.') for k in changed):
            with self._lock:
                self._joiner.config = self._joiner_config()
        if 'archive.enabled' in changed and self._archive is not None:
            self._archive.enabled = changed['archive.enabled']
            if self._inputs:
                self._set_archive_subs(self._archive.enabled)
        if 'archive.retention_h' in changed:
            self._purge()
        if {'prometheus.enabled', 'prometheus.port'} & changed.keys() and self._inputs:
            if self.params['prometheus.enabled']:
                self._start_prometheus(self.params['prometheus.port'])
            elif self._prom is not None:
                self._prom.stop()
                self._fault = ''
                self.diag.value('prometheus', 'off')

    def _set_archive_subs(self, enabled: bool) -> None:
        for sub in self._text_subs:
            self.destroy_subscription(sub)
        self._text_subs = []
        if enabled:
            self._text_subs = [
                self.create_subscription(ReplyChunk, 'reply', self._on_reply, EVENT_QOS),
            ]

    def _start_prometheus(self, port: int) -> None:
        try:
            if self._prom is None:
                self._prom = Prometheus()
            self._prom.start(port)
        except Exception as exc:  # port taken, no prometheus_client: keep running
            self.get_logger().error(f'prometheus endpoint on {PROMETHEUS_ADDRESS}:{port} '
                                    f'failed: {exc}')
            self._fault = f'prometheus endpoint on port {port} failed: {exc}'
            self.diag.error(self._fault)
            return
        self._fault = ''
        self.get_logger().info(
            f'prometheus: http://{PROMETHEUS_ADDRESS}:{self._prom.port}/metrics')
        self.diag.value('prometheus', f'http://{PROMETHEUS_ADDRESS}:{self._prom.port}/metrics')

    # -- inputs -----------------------------------------------------------------------
    def _bad(self, key: str, what: str) -> None:
        """Count and report (throttled) an input that was dropped or repaired."""
        self.warn_throttled(key, what)
        self._last_bad_s = time.monotonic()
        self._last_bad_what = what

    def _on_stamp(self, msg: StageStamp) -> None:
        why = tm.check_turn_id(msg.turn_id)
        stamp_ns = timeutil.from_msg(msg.stamp)
        if why is None and msg.stamp.nanosec >= 1_000_000_000:
            why = f'stamp nanosec {msg.stamp.nanosec} out of range'
        if why is None:
            why = tm.check_stamp(msg.stage, stamp_ns, timeutil.now_ns())
        if why is not None:
            self._bad('bad_stamp', f'dropped stamp {msg.stage[:40]!r} from '
                                   f'{msg.node[:40]!r}: {why}')
            return
        with self._lock:
            result = self._joiner.add_stamp(msg.turn_id, msg.stage, stamp_ns,
                                            msg.node[:64], time.monotonic())
            self._turn_news()
        if not result.accepted:
            self.diag.count('late_stamp')
            return
        if result.duplicate:
            self.diag.count('duplicate_stamp')
        self._write({'stage': tm.COMPONENT[msg.stage], 'event': msg.stage,
                     'turn_id': msg.turn_id, 'node': msg.node[:64], 't_ns': stamp_ns,
                     'since_speech_end_ms': result.since_speech_end_ms,
                     'duplicate': result.duplicate})

    def _on_playback(self, msg: PlaybackEvent) -> None:
        kinds = {PlaybackEvent.FIRST_AUDIBLE: 'first_audible',
                 PlaybackEvent.FINISHED: 'finished', PlaybackEvent.FLUSHED: 'flushed'}
        kind = kinds.get(msg.event)
        why = tm.check_turn_id(msg.turn_id)
        if kind is None:
            why = f'unknown playback event {msg.event}'
        audible_ns = timeutil.from_msg(msg.first_audible)
        if why is None and audible_ns and (
                msg.first_audible.nanosec >= 1_000_000_000
                or abs(audible_ns - timeutil.now_ns()) > tm.MAX_CLOCK_SKEW_NS):
            audible_ns = 0
            self._bad('bad_playback_event', 'playback event with an invalid first_audible')
        if why is not None:
            self._bad('bad_playback_event', f'dropped playback event: {why}')
            return
        flush_ms = float(msg.flush_ms)
        with self._lock:
            known = self._joiner.playback_event(msg.turn_id, kind, time.monotonic(),
                                                audible_ns, flush_ms)
            self._turn_news()
        if not known:
            self.diag.count('playback_unknown_turn')

    def _on_activity(self, msg: VoiceActivity) -> None:
        if tm.check_turn_id(msg.turn_id) is not None:
            if msg.turn_id:
                self._bad('bad_voice_activity', 'voice activity with an invalid turn id')
            return
        now = time.monotonic()
        if msg.event == VoiceActivity.TURN_DISCARDED:
            with self._lock:
                dropped = self._joiner.discard(msg.turn_id)
            if dropped:
                self.diag.count('turns_discarded')
        elif msg.event == VoiceActivity.END_OF_TURN:
            end_ns = timeutil.from_msg(msg.speech_end)
            if msg.speech_end.nanosec < 1_000_000_000 and \
                    tm.check_stamp(tm.SPEECH_END, end_ns, timeutil.now_ns()) is None:
                with self._lock:
                    self._joiner.set_speech_end(msg.turn_id, end_ns, now)
                    self._turn_news()
        elif msg.event not in (VoiceActivity.SPEECH_START, VoiceActivity.SPEECH_PROBABLY_ENDED,
                               VoiceActivity.SPEECH_RESUMED, VoiceActivity.BARGE_IN):
            self._bad('bad_voice_activity', f'unknown voice activity event {msg.event}')

    def _on_wake(self, msg: WakeWord) -> None:
        engine = msg.engine[:32] if msg.engine.isprintable() else '?'
        score = float(msg.score)
        if not math.isfinite(score):
            self._bad('bad_wake', 'wake word with a non-finite score')
            score = math.nan
        self.diag.count('wake_words')
        if self._prom is not None:
            self._prom.wakes.labels(engine=engine or '?').inc()
        self._write({'stage': 'wake', 'event': 'wake_word', 'turn_id': msg.turn_id[:128],
                     'keyword': msg.keyword[:64], 'engine': engine, 'score': score})

    def _on_transcript(self, msg: Transcript) -> None:
        """Finals only: the reason an unreliable one was not answered (always), the text
        (for the archive only)."""
        if not msg.is_final or tm.check_turn_id(msg.turn_id) is not None:
            return
        archive = self._archive is not None and self._archive.enabled
        with self._lock:
            if msg.unreliable:
                self._joiner.mark_not_heard(msg.turn_id, msg.unreliable, time.monotonic())
            if archive:
                self._joiner.add_text(msg.turn_id, 'transcript', msg.text, time.monotonic())
                self._turn_news()

    def _on_reply(self, msg: ReplyChunk) -> None:
        if tm.check_turn_id(msg.turn_id) is None and msg.text:
            with self._lock:
                self._joiner.add_text(msg.turn_id, 'reply', msg.text, time.monotonic())
                self._turn_news()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if len(msg.status) > MAX_DIAG_STATUSES:
            self._bad('bad_diagnostics', f'DiagnosticArray with {len(msg.status)} statuses '
                                         f'(reading the first {MAX_DIAG_STATUSES})')
        now = time.monotonic()
        own = self.get_fully_qualified_name()
        for status in msg.status[:MAX_DIAG_STATUSES]:
            name = status.name
            if name == own or not name or len(name) > 256:
                continue
            if name not in self._health and len(self._health) >= MAX_TRACKED_NODES:
                self._bad('bad_diagnostics', 'too many diagnostics sources; ignoring new ones')
                continue
            self._health[name] = (status, now)

    # -- periodic work ----------------------------------------------------------------
    def _tick(self) -> None:
        with self._lock:
            done = self._joiner.due(time.monotonic())
            open_turns = self._joiner.open_count
            evicted = self._joiner.evicted
            if not open_turns and self._fast_tick is not None:
                self._fast_tick.cancel()
        for turn in done:
            self._finish(turn)
        self.diag.value('open_turns', open_turns)
        if evicted:
            self.diag.value('turns_evicted', evicted)
        if self._jsonl is not None:
            self.diag.value('log_written', self._jsonl.written)
            if self._jsonl.dropped:
                self.diag.value('log_dropped', self._jsonl.dropped)
        period = self.params['archive.purge_period_s']
        if time.monotonic() - self._last_purge >= period:
            self._purge()

    def _finish(self, turn: tm.CompletedTurn) -> None:
        msg = TurnMetrics(turn_id=turn.turn_id, interrupted=turn.interrupted)
        msg.header.stamp = timeutil.to_msg(timeutil.now_ns())
        for stage in ('speech_end', 'endpoint', 'asr_first_partial', 'asr_final',
                      'llm_first_token', 'first_chunk', 'tts_first_audio', 'first_audible',
                      'interrupt', 'flushed'):
            setattr(msg, stage, timeutil.to_msg(turn.stamps.get(stage, 0)))
        for name, _a, _b in tm.DURATIONS:
            setattr(msg, name, float(turn.durations[name]))
        if self._turn_pub is not None:
            self._turn_pub.publish(msg)
        self._turns_published += 1
        self.diag.count(f'turns_{turn.outcome}')
        if self._prom is not None:
            self._prom.observe(turn)
        self._write(turn.log_record())
        if math.isfinite(turn.durations['e2e_ms']):
            self.diag.value('last_e2e_ms', f'{turn.durations["e2e_ms"]:.0f}')
        self.get_logger().info(
            f'turn {turn.turn_id[:40]}: {turn.outcome}, e2e '
            f'{_fmt(turn.durations["e2e_ms"])} ms (from endpoint '
            f'{_fmt(turn.durations["e2e_from_endpoint_ms"])} ms)')
        if self._archive is not None and self._archive.enabled and (turn.transcript
                                                                    or turn.reply):
            try:
                self._archive.write(turn.turn_id, turn.transcript, turn.reply,
                                    {k: v for k, v in turn.durations.items()
                                     if math.isfinite(v)})
            except OSError as exc:
                self._bad('archive_error', f'archive write failed: {exc.strerror or exc}')

    def _purge(self) -> None:
        self._last_purge = time.monotonic()
        result = privacy.purge_archive(privacy.archive_dir(self._home),
                                       self.params['archive.retention_h'])
        if result.deleted:
            self.get_logger().info(f'deleted {len(result.deleted)} archive file(s) older than '
                                   f'{self.params["archive.retention_h"]} h')
            self.diag.count('archive_purged', len(result.deleted))
        for error in result.errors:
            self._bad('archive_error', f'purge failed: {error}')

    def _publish_aggregate(self) -> None:
        tick = self._fast_tick
        if tick is None or tick.is_canceled():
            self._tick()                  # idle: the slow path of the periodic work
        now = time.monotonic()
        stale_s = self.params['diagnostics.stale_s']
        out = DiagnosticArray()
        out.header.stamp = self.get_clock().now().to_msg()
        worst, worst_name, counts = 0, '', {0: 0, 1: 0, 2: 0, STALE: 0}
        for name, (status, seen) in sorted(self._health.items()):
            level = int.from_bytes(status.level, 'little') if isinstance(
                status.level, bytes) else int(status.level)
            level = min(level, 2)
            message = status.message
            if now - seen > stale_s:
                level, message = STALE, f'stale: no diagnostics for {now - seen:.0f} s'
            counts[level] += 1
            if level > worst:
                worst, worst_name = level, name
            agg = DiagnosticStatus(name=name, hardware_id=status.hardware_id,
                                   message=message[:500],
                                   level=bytes([min(level, STALE)]))
            agg.values = list(status.values[:64])
            out.status.append(agg)
            if self._levels.get(name) != level:
                self._levels[name] = level
                self._write({'stage': 'diagnostics', 'event': 'health', 'node': name[:128],
                             'level': LEVEL_NAMES.get(level, str(level)),
                             'message': message[:200]})
            if self._prom is not None:
                self._prom.health.labels(node=name[:128]).set(level)
        if self._agg_pub is not None:
            self._agg_pub.publish(out)
        self.diag.value('nodes', ', '.join(f'{LEVEL_NAMES[k]}={v}' for k, v in counts.items()
                                           if v))
        summary = (f'{len(self._health)} node(s) reporting; worst: {worst_name} '
                   f'{LEVEL_NAMES[worst]}' if worst else f'{len(self._health)} node(s) OK')
        if self._fault:
            self.diag.error(self._fault)
        elif now - self._last_bad_s < BAD_INPUT_WARN_S:
            self.diag.warn(f'rejected bad input: {self._last_bad_what[:120]}')
        else:
            self.diag.ok(summary)

    def _write(self, record: dict) -> None:
        if self._jsonl is not None and not self._jsonl.write(record):
            self.diag.count('log_dropped')


def _fmt(value: float) -> str:
    return f'{value:.0f}' if math.isfinite(value) else '?'


main = main_for(MetricsNode)


if __name__ == '__main__':
    main()
