"""The manager: brings the stages up, keeps them up, and says whether Wallie is ready.

- Drives every lifecycle stage configure -> activate over the standard lifecycle services:
  all stages configure at once (model loading overlaps), each activates once the stages it
  depends on (wallie_bringup.graph) are active.
- Never requests a transition that is invalid from the node's current state: every
  ChangeState is preceded by a GetState, and a timed-out transition is followed by GetState
  polling until the node settles (Jazzy's rclpy 7.1.6 kills a Python lifecycle node that
  receives an invalid transition id; after a SIGKILL the dead node's services linger ~20 s,
  so a request may reach nobody). Requests carry the transition label too: rclpy and rclcpp
  resolve a label against the current state and answer an invalid one with success=false.
- Watches the stages: the process (pid files written by `wallie up`), the lifecycle state
  (polled), the /diagnostics heartbeat. A crashed, errored, finalized or hung stage is
  brought back to active with exponential backoff; a restart loop is capped and reported.
- Reports readiness and what the assistant is doing on `assistant/state` (AssistantState,
  transient local) and on /diagnostics, and in `<run dir>/state.json`.
- Performance governor: steps a configured ladder down on GPU OOM or sustained latency over
  budget, and back up when healthy (parameters, and lifecycle reloads where needed).
- Keeps the conversation history in RAM (the LLM publishes it on `llm/history`) and gives
  it back to a restarted LLM (parameter `llm.history_json`) before it is configured.
- SIGHUP (or the `~/reload_config` service) re-reads config.toml and applies changes live.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import String
from std_srvs.srv import Trigger

from wallie_bringup import config as wconfig
from wallie_bringup import graph as wgraph
from wallie_common import params as P
from wallie_common import services, timeutil
from wallie_common.node_base import DIAGNOSTICS_TOPIC
from wallie_common.qos import EVENT_QOS, STATE_QOS
from wallie_common.restart import Backoff, RestartTracker
from wallie_common.runtime import (
    apply_privacy_env,
    ignore_stop_signals,
    shutdown_watchdog,
    teardown,
)
from wallie_interfaces.msg import (
    AssistantState,
    PlaybackEvent,
    StageStamp,
    VoiceActivity,
    WakeWord,
)
from wallie_manager import manager_logic as L

PARAMS = (
    P.Param('autostart', True, 'Bring the stages up (configure, activate) at start-up.',
            read_only=True),
    P.Param('graph_file', '', 'YAML graph replacing the built-in node list ("" = built-in).',
            read_only=True),
    P.Param('run_dir', '', 'Run directory of `wallie up` / the launch file: pid files, '
            'run.json, params.yaml, state.json ("" = none).', read_only=True),
    P.Param('bringup.parallel_configure', True,
            'Configure all stages at once (activation still follows dependency order).'),
    P.Param('lifecycle.call_timeout_s', 2.0, 'Timeout of GetState and other quick calls.',
            min=0.1, max=60.0),
    P.Param('lifecycle.transition_timeout_s', 30.0,
            'Timeout of activate/deactivate/cleanup (configure uses the graph value).',
            min=1.0, max=600.0),
    P.Param('lifecycle.send_labels', True,
            'Also send the transition label (a stale request is then refused, not fatal).'),
    P.Param('watch.period_s', 0.5, 'How often each stage is checked.', min=0.05, max=10.0),
    P.Param('watch.unresponsive_after', 3,
            'Unanswered GetState polls (and no heartbeat) before a stage counts as down.',
            min=1, max=100),
    P.Param('watch.heartbeat_timeout_s', 5.0,
            'Seconds without /diagnostics from a stage before its heartbeat is stale.',
            min=0.5, max=600.0),
    P.Param('watch.hung_timeout_s', 20.0,
            'An active stage unresponsive this long is killed to be restarted (needs a pid '
            'file; 0 = never).', min=0.0, max=3600.0),
    P.Param('watch.respawn_timeout_s', 90.0,
            'A stage whose process exited and was not started again within this long is '
            'reported failed (respawn disabled, or the process supervisor gave up).',
            min=1.0, max=86400.0),
    P.Param('restart.backoff_initial_s', 0.5, 'First restart delay.', min=0.0, max=60.0),
    P.Param('restart.backoff_max_s', 30.0, 'Largest restart delay.', min=0.1, max=3600.0),
    P.Param('restart.max_restarts', 5,
            'Failures within restart.window_s before giving up (a restart loop).',
            min=1, max=1000),
    P.Param('restart.window_s', 120.0, 'Window for counting failures.', min=1.0,
            max=86400.0),
    P.Param('restart.cooldown_s', 300.0,
            'After giving up, try again after this long (0 = never).', min=0.0,
            max=86400.0),
    P.Param('governor.enabled', True, 'Step the ladder down/up on OOM or latency.'),
    P.Param('governor.latency_budget_ms', 1500.0,
            'End-to-end budget (speech end -> first audible), median over the window.',
            min=50.0, max=60000.0),
    P.Param('governor.window_turns', 5, 'Turns in the latency median.', min=1, max=100),
    P.Param('governor.step_up_turns', 10,
            'Good turns in a row (under budget * step_up_ratio) before stepping up.',
            min=1, max=1000),
    P.Param('governor.step_up_ratio', 0.6, 'Fraction of the budget that counts as good.',
            min=0.05, max=1.0),
    P.Param('governor.cooldown_s', 30.0, 'Least time between two steps.', min=0.0,
            max=3600.0),
    P.Param('memory.enabled', True,
            'Keep the conversation history (RAM only) and restore it into a restarted LLM.'),
    P.Param('memory.stage', 'llm', 'The stage whose history is kept.', read_only=True),
    P.Param('memory.topic', 'llm/history', 'Where that stage publishes its history (JSON '
            'std_msgs/String, transient local).', read_only=True),
    P.Param('memory.restore_param', 'llm.history_json',
            'Parameter of that stage that takes the history back after a restart.'),
    P.Param('shutdown.deactivate_stages', True,
            'On a clean stop, deactivate the stages in reverse order first.'),
    P.Param('shutdown.timeout_s', 3.0, 'Budget for that orderly deactivation.', min=0.0,
            max=60.0),
)
ARRAY_PARAMS = {
    'stages': 'Stages to manage ([] = every lifecycle node of the graph).',
    'governor.ladder': 'Ladder rungs, mildest first: "node:param=value; !node:param=value" '
                       '(! = applied through a lifecycle reload).',
}


@dataclass
class Stage:
    """What the manager knows about one stage."""

    spec: wgraph.NodeSpec
    fqn: str
    tracker: RestartTracker
    get_state: Any = None
    change_state: Any = None
    set_params: Any = None
    get_params: Any = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    phase: str = 'starting'        # starting | active | recovering | failed | stopping
    label: str = 'unknown'         # last lifecycle state seen
    detail: str = ''
    pid: int | None = None
    pid_dead: bool = False
    killed_pid: int | None = None  # we killed it (already counted as a failure)
    misses: int = 0
    unresponsive_since: float | None = None
    down_since: float | None = None
    next_attempt_at: float = 0.0
    ever_active: bool = False
    last_recovery_s: float | None = None
    recoveries: int = 0
    heartbeat_at: float | None = None
    diag_level: int = 0
    diag_message: str = ''
    oom_marker: str = ''


class ManagerNode(Node):
    """Lifecycle manager, watchdog, governor and readiness reporter of the Wallie graph."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('manager', **kwargs)
        self._specs = {p.name: p for p in PARAMS}
        P.declare(self, PARAMS)
        for name, desc in ARRAY_PARAMS.items():
            self.declare_parameter(name, Parameter.Type.STRING_ARRAY,
                                   P.Param(name, [], desc).descriptor())
        self.p: dict[str, Any] = P.values(self, PARAMS)
        self.add_on_set_parameters_callback(self._validate_params)
        self.add_post_set_parameters_callback(self._apply_params)
        self._t0 = time.monotonic()
        self._stopping = threading.Event()
        self._cbg = ReentrantCallbackGroup()
        self._run_dir = Path(self.p['run_dir']).expanduser() if self.p['run_dir'] else None

        nodes = wgraph.load_graph(self.p['graph_file'] or None)
        wanted = self._array('stages')
        if wanted:
            nodes = wgraph.select(nodes, only=wanted)
        ns = self.get_namespace()
        self.stages: dict[str, Stage] = {}
        for spec in wgraph.activation_order(nodes):
            st = Stage(spec=spec, fqn=wgraph.fq_name(spec.name, ns), tracker=self._tracker())
            st.get_state = self.create_client(GetState, f'{st.fqn}/get_state',
                                              callback_group=self._cbg)
            st.change_state = self.create_client(ChangeState, f'{st.fqn}/change_state',
                                                 callback_group=self._cbg)
            st.set_params = self.create_client(SetParameters, f'{st.fqn}/set_parameters',
                                               callback_group=self._cbg)
            st.get_params = self.create_client(GetParameters, f'{st.fqn}/get_parameters',
                                               callback_group=self._cbg)
            self.stages[spec.name] = st
        self._by_fqn = {st.fqn: st for st in self.stages.values()}
        # SetParameters clients for every other node too (config reload reaches metrics).
        self._param_clients = {name: st.set_params for name, st in self.stages.items()}
        for spec in nodes:
            if spec.name not in self._param_clients and spec.name != wgraph.MANAGER:
                self._param_clients[spec.name] = self.create_client(
                    SetParameters, f'{wgraph.fq_name(spec.name, ns)}/set_parameters',
                    callback_group=self._cbg)

        # Governor.
        self._ladder = L.parse_ladder(self._array('governor.ladder'))
        self._governor = L.Governor(
            rungs=len(self._ladder), budget_ms=self.p['governor.latency_budget_ms'],
            window=self.p['governor.window_turns'], up_turns=self.p['governor.step_up_turns'],
            up_ratio=self.p['governor.step_up_ratio'], cooldown_s=self.p['governor.cooldown_s'])
        self._baseline: dict[tuple[str, str], Any] = {}
        self._overlay: dict[str, dict[str, Any]] = {}   # re-applied to a restarted stage
        self._applied: dict[tuple[str, str], Any] = {}  # what the governor last set
        self._governor_lock = threading.Lock()
        self._turns = L.TurnLatency()

        # Conversation memory (RAM only).
        self._history: str | None = None
        self._history_lock = threading.Lock()

        # Conversation state.
        self._conv_state = L.IDLE
        self._turn_id = ''
        self._state_lock = threading.Lock()
        self._last_published: tuple | None = None
        self._ready_at: float | None = None

        self._state_pub = self.create_publisher(AssistantState, 'assistant/state', STATE_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 50,
                                 callback_group=self._cbg)
        self.create_subscription(VoiceActivity, 'voice/activity', self._on_activity, EVENT_QOS)
        self.create_subscription(WakeWord, 'voice/wake', self._on_wake, EVENT_QOS)
        self.create_subscription(PlaybackEvent, 'playback/events', self._on_playback, EVENT_QOS)
        self.create_subscription(StageStamp, 'metrics/stamps', self._on_stamp, EVENT_QOS)
        self.create_subscription(String, self.p['memory.topic'], self._on_history, STATE_QOS)
        self.create_service(Trigger, '~/reload_config', self._on_reload_srv,
                            callback_group=self._cbg)
        self.create_timer(0.2, self._publish_state, callback_group=self._cbg)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=self._cbg)
        self._threads: list[threading.Thread] = []
        self._reload_lock = threading.Lock()
        self.get_logger().info(
            f'managing {len(self.stages)} stage(s) in activation order: '
            f'{", ".join(self.stages)}; governor ladder: {len(self._ladder)} step(s)')

    # -- parameters -----------------------------------------------------------------------
    def _array(self, name: str) -> list[str]:
        try:
            value = self.get_parameter(name).value
        except ParameterUninitializedException:
            return []
        return [str(v) for v in (value or []) if str(v).strip()]

    def _validate_params(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name == 'governor.ladder':
                try:
                    L.parse_ladder(p.value or [])
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            if p.name == 'stages':
                return SetParametersResult(successful=False, reason='stages is read-only')
        result = P.validate(self._specs, params)
        if not result.successful:
            self.get_logger().warning(f'rejected parameter change: {result.reason}')
        return result

    def _apply_params(self, params: list[Parameter]) -> None:
        for p in params:
            if p.name in self._specs:
                value = p.value
                if isinstance(self._specs[p.name].default, float) and isinstance(value, int):
                    value = float(value)
                self.p[p.name] = value
        g = self._governor
        g.budget_ms = self.p['governor.latency_budget_ms']
        g.window = self.p['governor.window_turns']
        g.up_turns = self.p['governor.step_up_turns']
        g.up_ratio = self.p['governor.step_up_ratio']
        g.cooldown_s = self.p['governor.cooldown_s']
        for st in self.stages.values():
            st.tracker.backoff = Backoff(self.p['restart.backoff_initial_s'],
                                           self.p['restart.backoff_max_s'])
            st.tracker.max_restarts = self.p['restart.max_restarts']
            st.tracker.window_s = self.p['restart.window_s']
            st.tracker.cooldown_s = self.p['restart.cooldown_s']
        if any(p.name == 'governor.ladder' for p in params):
            self._ladder = L.parse_ladder(self._array('governor.ladder'))
            g.rungs = len(self._ladder)
            g.rung = min(g.rung, g.rungs)

    def _tracker(self) -> RestartTracker:
        return RestartTracker(
            backoff=Backoff(self.p['restart.backoff_initial_s'],
                              self.p['restart.backoff_max_s']),
            max_restarts=self.p['restart.max_restarts'], window_s=self.p['restart.window_s'],
            cooldown_s=self.p['restart.cooldown_s'])

    # -- start / stop ---------------------------------------------------------------------
    def start(self) -> None:
        if not self.p['autostart']:
            for st in self.stages.values():
                st.phase = 'idle'
                st.detail = 'autostart is off'
        for st in self.stages.values():
            t = threading.Thread(target=self._stage_loop, args=(st,), name=f'watch-{st.spec.name}',
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop watching; deactivate the stages in reverse order within a time budget."""
        self._stopping.set()
        for st in self.stages.values():
            st.phase = 'stopping'
        for t in self._threads:
            t.join(timeout=0.5)
        if not self.p['shutdown.deactivate_stages']:
            return
        deadline = time.monotonic() + self.p['shutdown.timeout_s']
        for st in reversed(list(self.stages.values())):
            left = deadline - time.monotonic()
            if left <= 0.05:
                break
            if st.lock.acquire(timeout=min(left, 0.5)):
                try:
                    self._transition(st, 'deactivate', timeout=max(0.1, left),
                                     quick=min(left, 0.5), shutdown_call=True)
                finally:
                    st.lock.release()

    # -- service calls --------------------------------------------------------------------
    def _call(self, client, request, timeout: float,
              abort: Callable[[], bool] | None = None):
        """Call a service from a worker thread; None on timeout, no server or abort."""
        try:
            return services.call(client, request, timeout, abort=abort)
        except Exception:  # ServiceCallError, or the response could not be taken (node gone)
            return None

    def _get_state(self, st: Stage, timeout: float | None = None) -> str | None:
        res = self._call(st.get_state, GetState.Request(),
                         timeout or self.p['lifecycle.call_timeout_s'])
        return None if res is None else res.current_state.label

    def _transition(self, st: Stage, transition: str, timeout: float,
                    quick: float | None = None,
                    shutdown_call: bool = False) -> tuple[str, str | None]:
        """Request `transition` only if GetState says it is valid right now.

        Returns (outcome, state): outcome is 'ok', 'failed' (the node refused or its
        callback failed), 'skipped' (not valid from the current state), 'timeout' (no
        answer: the node was then polled until it settled or the timeout passed) or
        'unreachable' (GetState unanswered).
        """
        state = self._get_state(st, quick)
        if state is None:
            return 'unreachable', None
        if not L.is_valid(transition, state):
            return 'skipped', state
        tid, _ = L.TRANSITIONS[transition]
        req = ChangeState.Request()
        req.transition.id = tid
        if self.p['lifecycle.send_labels']:
            req.transition.label = L.LABELS[transition]
        t0 = time.monotonic()

        def abort() -> bool:
            return self._pid_gone(st) or (self._stopping.is_set() and not shutdown_call)
        self.get_logger().info(f'{st.spec.name}: {transition} (from {state})')
        res = self._call(st.change_state, req, timeout, abort=abort)
        if res is None:
            # No answer: the request may have gone to a dead process's lingering service,
            # or the transition is still running. Never re-send blindly: poll until the
            # node reports a primary state (it answers GetState only between callbacks).
            settled = None
            deadline = t0 + timeout
            while time.monotonic() < deadline and not abort():
                settled = self._get_state(st)
                if settled in L.PRIMARY:
                    break
            st.label = settled or st.label
            return 'timeout', settled
        after = self._get_state(st)
        st.label = after or st.label
        if not res.success:
            return 'failed', after
        self.get_logger().info(f'{st.spec.name}: {transition} done in '
                               f'{time.monotonic() - t0:.2f} s -> {after}')
        return 'ok', after

    # -- pids (written by `wallie up`) ----------------------------------------------------
    def _read_pid(self, st: Stage) -> int | None:
        if self._run_dir is None:
            return None
        try:
            return int((self._run_dir / 'pids' / st.spec.name).read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            with open(f'/proc/{pid}/stat') as fh:
                return fh.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
        except (OSError, IndexError):
            try:
                os.kill(pid, 0)
                return True
            except ProcessLookupError:
                return False
            except PermissionError:
                return True

    def _pid_gone(self, st: Stage) -> bool:
        pid = self._read_pid(st)
        if pid is None:
            return False
        return pid != st.pid or not self._alive(pid)

    def _check_pid(self, st: Stage) -> str | None:
        """'new' when a new process instance appeared, 'dead' when ours exited."""
        pid = self._read_pid(st)
        if pid is None:
            return None
        if pid != st.pid:
            old, st.pid, st.pid_dead = st.pid, pid, False
            if old is not None:
                return 'new'
        if not st.pid_dead and not self._alive(pid):
            st.pid_dead = True
            return 'dead'
        return None

    def _kill_stage(self, st: Stage, why: str) -> bool:
        pid = self._read_pid(st)
        if pid is None or not self._alive(pid):
            return False
        self.get_logger().error(f'{st.spec.name}: {why}; killing pid {pid} to restart it')
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            return False
        st.killed_pid = pid
        return True

    # -- the per-stage watch loop ---------------------------------------------------------
    def _stage_loop(self, st: Stage) -> None:
        while not self._stopping.is_set():
            try:
                self._stage_step(st)
            except Exception as exc:  # keep watching whatever happens
                self.get_logger().error(f'{st.spec.name}: watch step failed: {exc!r}')
            self._stopping.wait(self.p['watch.period_s'])

    def _failure(self, st: Stage, why: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if st.phase == 'failed':
            return
        if st.down_since is None:
            st.down_since = now
        delay = st.tracker.record_failure(now)
        if delay is None:
            st.phase = 'failed'
            st.detail = (f'restart loop: {st.tracker.recent(now)} failures within '
                         f'{st.tracker.window_s:.0f} s; gave up ({why})')
            retry = st.tracker.cooldown_s
            self.get_logger().error(
                f'{st.spec.name}: {st.detail}' +
                (f'; will try again in {retry:.0f} s' if retry > 0 else ''))
            return
        st.phase = 'recovering'
        st.next_attempt_at = now + delay
        attempt = st.tracker.recent(now)
        st.detail = f'{why}; restart {attempt} in {delay:.1f} s'
        self.get_logger().warning(f'{st.spec.name}: {st.detail}')

    def _stage_step(self, st: Stage) -> None:
        if st.phase in ('idle', 'stopping'):
            return
        now = time.monotonic()
        pid_event = self._check_pid(st)
        if pid_event == 'dead' and st.phase in ('active', 'starting', 'recovering') \
                and st.killed_pid != st.pid:
            self._failure(st, f'process {st.pid} exited', now)
        elif pid_event == 'new' and st.phase == 'active':
            self._failure(st, 'process was restarted', now)
        if st.phase == 'failed':
            if not st.tracker.may_retry(now):
                st.label = self._get_state(st) or st.label
                return
            st.phase = 'recovering'
            st.detail = 'cool-down over: trying again'
        if st.phase == 'recovering' and now < st.next_attempt_at:
            return
        if st.pid_dead:
            # Wait for the supervisor / launch to respawn the process, but not forever.
            waited = now - (st.down_since or now)
            if st.phase != 'failed' and waited > self.p['watch.respawn_timeout_s']:
                st.phase = 'failed'
                st.tracker.gave_up_at = now
                st.detail = (f'process exited and was not restarted within {waited:.0f} s '
                             '(respawn off, or the process supervisor gave up)')
                self.get_logger().error(f'{st.spec.name}: {st.detail}')
            return
        # Short polls while a (re)started process comes up: the first requests may go to a
        # dead instance's lingering service and are simply lost.
        quick = self.p['lifecycle.call_timeout_s']
        if st.phase != 'active':
            quick = min(quick, 0.5)
        state = self._get_state(st, quick)
        if state is None:
            self._unanswered(st, now)
            return
        st.misses = 0
        st.unresponsive_since = None
        st.label = state
        if state == 'active':
            if st.phase != 'active':
                self._now_active(st, now)
            return
        if state in L.TRANSITIONAL:
            return
        if st.phase == 'active' or state == 'finalized':
            self._failure(st, f'found {state} (expected active)', now)
            # A finalized node cannot be brought back by transitions: restart its process.
            if state == 'finalized' and not self._kill_stage(st, 'finalized'):
                st.detail += '; no pid file: restart its process'
            return
        self._drive_up(st)

    def _unanswered(self, st: Stage, now: float) -> None:
        st.misses += 1
        if st.unresponsive_since is None:
            st.unresponsive_since = now
        if st.phase != 'active':
            return
        stale = st.heartbeat_at is None or \
            now - st.heartbeat_at > self.p['watch.heartbeat_timeout_s']
        if st.misses >= self.p['watch.unresponsive_after'] and stale:
            hung_for = now - st.unresponsive_since
            hung = self.p['watch.hung_timeout_s']
            if hung > 0 and hung_for >= hung:
                self._kill_stage(st, f'unresponsive for {hung_for:.0f} s')
            self._failure(st, f'not responding ({st.misses} polls, no heartbeat)', now)

    def _now_active(self, st: Stage, now: float) -> None:
        if st.down_since is not None:
            st.last_recovery_s = now - st.down_since
            st.recoveries += 1
            self.get_logger().warning(
                f'{st.spec.name}: recovered (active again) {st.last_recovery_s:.2f} s after '
                f'the failure; restart #{st.tracker.total}')
        else:
            self.get_logger().info(f'{st.spec.name}: active')
        st.down_since = None
        st.phase = 'active'
        st.ever_active = True
        st.detail = ''
        if self._ready_at is None and self._all_required_active():
            self._ready_at = now
            self.get_logger().info(
                f'READY: all {len(self.stages)} stages active '
                f'{now - self._t0:.2f} s after the manager started')

    def _deps_ready(self, st: Stage) -> tuple[bool, list[str]]:
        waiting = []
        for dep in st.spec.after:
            d = self.stages.get(dep)
            if d is None or d.phase == 'failed':
                continue
            if d.label != 'active' or d.phase != 'active':
                waiting.append(dep)
        return not waiting, waiting

    def _drive_up(self, st: Stage) -> None:
        """One pass towards active: configure (if unconfigured), then activate."""
        with st.lock:
            if self._stopping.is_set():
                return
            state = st.label
            if state == 'unconfigured':
                if not self.p['bringup.parallel_configure']:
                    ok, waiting = self._deps_ready(st)
                    if not ok:
                        st.detail = f'waiting for {", ".join(waiting)}'
                        return
                self._prepare_new_instance(st)
                st.detail = 'configuring'
                outcome, state = self._transition(st, 'configure', st.spec.configure_timeout_s)
                if outcome == 'failed':
                    self._failure(st, f'configure failed (now {state})')
                    return
                if outcome != 'ok':
                    st.detail = f'configure: {outcome} (state {state})'
                    return
            if state == 'inactive':
                ok, waiting = self._deps_ready(st)
                if not ok:
                    st.detail = f'configured; waiting for {", ".join(waiting)}'
                    return
                st.detail = 'activating'
                outcome, state = self._transition(st, 'activate',
                                                  self.p['lifecycle.transition_timeout_s'])
                if outcome == 'failed':
                    self._failure(st, f'activate failed (now {state})')
                    return
            if state == 'active':
                self._now_active(st, time.monotonic())

    def _all_required_active(self) -> bool:
        return all(st.phase == 'active' for st in self.stages.values() if st.spec.required)

    # -- restarted instances: parameters and history --------------------------------------
    def _prepare_new_instance(self, st: Stage) -> None:
        """Before a configure: re-apply governor values and, after a crash, the history."""
        overlay = dict(self._overlay.get(st.spec.name, {}))
        if self.p['memory.enabled'] and st.spec.name == self.p['memory.stage'] \
                and st.ever_active:
            with self._history_lock:
                history = self._history
            if history is not None:
                overlay[self.p['memory.restore_param']] = history
        if not overlay:
            return
        problems = self._set_params(st, overlay, 'restart')
        if self.p['memory.restore_param'] in overlay and not any(
                self.p['memory.restore_param'] in p for p in problems):
            self.get_logger().info(f'{st.spec.name}: conversation history restored '
                                   f'({len(overlay[self.p["memory.restore_param"]])} bytes)')

    def _on_history(self, msg: String) -> None:
        """Keep the latest conversation history the memory stage published (RAM only)."""
        if self.p['memory.enabled']:
            with self._history_lock:
                self._history = msg.data

    def _set_params(self, st: Stage, values: dict[str, Any], why: str) -> list[str]:
        """SetParameters on a stage; return the reasons of rejected values."""
        results = self._set_node_params(st.spec.name, values, why)
        if results is None:
            return [f'{st.spec.name}: no answer from set_parameters']
        return [f'{st.spec.name}/{k}: {why_not}' for k, why_not in results.items() if why_not]

    def _set_node_params(self, name: str, values: dict[str, Any],
                         why: str) -> dict[str, str] | None:
        """SetParameters on any graph node: {param: '' if accepted else reason}, or None."""
        client = self._param_clients.get(name)
        if client is None:
            return None
        req = SetParameters.Request()
        try:
            req.parameters = [Parameter(k, value=v).to_parameter_msg()
                              for k, v in values.items()]
        except (TypeError, ValueError) as exc:
            return {k: f'cannot send {v!r}: {exc}' for k, v in values.items()}
        res = self._call(client, req, self.p['lifecycle.call_timeout_s'] * 2)
        if res is None:
            self.get_logger().warning(f'{why}: {name} did not answer set_parameters')
            return None
        out = {}
        for k, r in zip(values, res.results):
            out[k] = '' if r.successful else (r.reason or 'rejected')
            if not r.successful:
                self.get_logger().warning(f'{why}: {name}/{k} rejected: {out[k]}')
        return out

    def _get_params(self, st: Stage, names: list[str]) -> dict[str, Any]:
        res = self._call(st.get_params, GetParameters.Request(names=names),
                         self.p['lifecycle.call_timeout_s'])
        if res is None:
            return {}
        return {n: parameter_value_to_python(v) for n, v in zip(names, res.values)}

    # -- governor -------------------------------------------------------------------------
    def _on_stamp(self, msg: StageStamp) -> None:
        e2e = self._turns.add(msg.turn_id, msg.stage, timeutil.from_msg(msg.stamp))
        if e2e is None or not self.p['governor.enabled'] or not self._ladder:
            return
        rung = self._governor.on_latency(e2e, time.monotonic())
        if rung is not None:
            self._apply_rung_async(rung)

    def _on_oom(self, st: Stage, what: str) -> None:
        self.get_logger().error(f'{st.spec.name}: GPU out of memory reported ({what})')
        if not self.p['governor.enabled'] or not self._ladder:
            return
        rung = self._governor.on_oom(time.monotonic(), f'{st.spec.name}: {what}')
        if rung is not None:
            self._apply_rung_async(rung)

    def _apply_rung_async(self, rung: int) -> None:
        threading.Thread(target=self._apply_rung, args=(rung,), daemon=True,
                         name='governor').start()

    def _apply_rung(self, rung: int) -> None:
        with self._governor_lock:
            self.get_logger().warning(
                f'governor: step {rung}/{len(self._ladder)} ({self._governor.reason})')
            touched = {(a.node, a.param): a for step in self._ladder for a in step}
            for (node, param) in touched:
                if (node, param) not in self._baseline and node in self.stages:
                    got = self._get_params(self.stages[node], [param])
                    if param in got and got[param] is not None:
                        self._baseline[(node, param)] = got[param]
            target = L.rung_values(self._ladder, rung, self._baseline)
            per_node: dict[str, dict[str, dict[str, Any]]] = {}
            for (node, param), value in target.items():
                if value is None or node not in self.stages:
                    continue
                if self._applied.get((node, param), self._baseline.get((node, param))) \
                        == value:
                    continue          # unchanged: no needless reload
                kind = 'reconfigure' if touched[(node, param)].reconfigure else 'live'
                per_node.setdefault(node, {}).setdefault(kind, {})[param] = value
                self._applied[(node, param)] = value
                if rung:
                    self._overlay.setdefault(node, {})[param] = value
                else:             # back at the baseline: a restart needs nothing re-applied
                    self._overlay.get(node, {}).pop(param, None)
            for node, kinds in per_node.items():
                st = self.stages[node]
                if kinds.get('live'):
                    self._set_params(st, kinds['live'], f'governor step {rung}')
                if kinds.get('reconfigure'):
                    self._reload_stage(st, kinds['reconfigure'], f'governor step {rung}')

    def _reload_stage(self, st: Stage, values: dict[str, Any], why: str) -> None:
        """deactivate -> cleanup -> set parameters -> configure -> activate."""
        with st.lock:
            for step in ('deactivate', 'cleanup'):
                outcome, state = self._transition(st, step,
                                                  self.p['lifecycle.transition_timeout_s'])
                if outcome not in ('ok', 'skipped'):
                    self.get_logger().error(f'{why}: {st.spec.name} {step}: {outcome}')
                    return
            self._set_params(st, values, why)
            st.phase = 'starting'
            st.label = self._get_state(st) or st.label
        self._drive_up(st)

    # -- configuration reload (SIGHUP) ----------------------------------------------------
    def reload_config(self) -> tuple[bool, str]:
        """Re-read config.toml (same profile/flags as the run) and apply the changes."""
        if self._run_dir is None or not (self._run_dir / 'run.json').is_file():
            return False, 'no run directory with run.json: nothing to reload'
        with self._reload_lock:
            try:
                run = wconfig.RunConfig.from_json((self._run_dir / 'run.json').read_text())
                run.create_config = False
                new = wconfig.resolve(run)
                old_path = self._run_dir / 'params.yaml'
                old = wconfig.load_params_file(old_path) if old_path.is_file() else {}
            except (wconfig.ConfigError, OSError, ValueError) as exc:
                self.get_logger().error(f'reload: {exc}')
                return False, str(exc)
            for w in new.warnings:
                self.get_logger().warning(f'reload: {w}')
            changes = wconfig.diff(old, new.params)
            applied: list[str] = []
            rejected: list[str] = []
            accepted = wconfig.merge(old)
            for node, values in changes.items():
                if node == wconfig.GLOBAL:
                    targets = list(self._param_clients)
                else:
                    targets = [node]
                for name in targets:
                    if name == wgraph.MANAGER:
                        problems = self._set_own_params(values)
                        rejected += problems
                        results = {k: ('x' if any(p.startswith(f'manager/{k}:')
                                                  for p in problems) else '')
                                   for k in values}
                    else:
                        results = self._set_node_params(name, values, 'reload')
                    if results is None:
                        rejected.append(f'{name}: not reachable, not applied '
                                        '(reload again once it runs)')
                        continue
                    ok = {k: v for k, v in values.items() if not results.get(k)}
                    rejected += [f'{name}/{k}: {r}' for k, r in results.items()
                                 if r and name != wgraph.MANAGER]
                    if node != wconfig.GLOBAL or name == targets[-1]:
                        accepted.setdefault(node, {}).update(ok)
                    applied += [f'{name}/{k}={v!r}' for k, v in ok.items()]
            wconfig.write_params_file(accepted, old_path)
        msg = f'applied {len(applied)} change(s)'
        if applied:
            msg += ': ' + ', '.join(applied)
        if rejected:
            msg += f'; rejected {len(rejected)}: ' + '; '.join(rejected)
        self.get_logger().info(f'reload: {msg}')
        return not rejected, msg

    def _set_own_params(self, values: dict[str, Any]) -> list[str]:
        out = []
        for k, v in values.items():
            try:
                res = self.set_parameters([Parameter(k, value=v)])[0]
            except Exception as exc:
                out.append(f'manager/{k}: {exc}')
                continue
            if not res.successful:
                out.append(f'manager/{k}: {res.reason}')
        return out

    def _on_reload_srv(self, _req, resp):
        resp.success, resp.message = self.reload_config()
        return resp

    # -- events -> conversation state -----------------------------------------------------
    def _on_wake(self, msg: WakeWord) -> None:
        self._set_conv(L.LISTENING, msg.turn_id)

    def _on_activity(self, msg: VoiceActivity) -> None:
        ev = msg.event
        if ev in (VoiceActivity.SPEECH_START, VoiceActivity.BARGE_IN,
                  VoiceActivity.SPEECH_RESUMED):
            self._set_conv(L.LISTENING, msg.turn_id)
        elif ev == VoiceActivity.END_OF_TURN:
            self._set_conv(L.THINKING, msg.turn_id)
        elif ev == VoiceActivity.TURN_DISCARDED:
            self._set_conv(L.IDLE, '')

    def _on_playback(self, msg: PlaybackEvent) -> None:
        if msg.event == PlaybackEvent.FIRST_AUDIBLE:
            self._set_conv(L.SPEAKING, msg.turn_id)
        elif msg.turn_id == self._turn_id or self._conv_state == L.SPEAKING:
            self._set_conv(L.IDLE, '')

    def _set_conv(self, state: int, turn_id: str) -> None:
        with self._state_lock:
            self._conv_state = state
            self._turn_id = turn_id

    # -- diagnostics in -------------------------------------------------------------------
    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        for status in msg.status:
            st = self._by_fqn.get(status.name)
            if st is None:
                continue
            st.heartbeat_at = now
            st.diag_level = int.from_bytes(status.level, 'little') \
                if isinstance(status.level, bytes) else int(status.level)
            st.diag_message = status.message
            marker = self._oom_marker(status)
            if marker and marker != st.oom_marker:
                st.oom_marker = marker
                self._on_oom(st, status.message or marker)

    @staticmethod
    def _oom_marker(status: DiagnosticStatus) -> str:
        """A token that changes with every new OOM report of a stage ('' = none)."""
        for kv in status.values:
            if 'oom' in kv.key.lower() and kv.value not in ('', '0', 'false', 'False'):
                return f'{kv.key}={kv.value}'
        text = status.message.lower()
        if 'out of memory' in text or ' oom' in f' {text}':
            return f'msg:{status.message}'
        return ''

    # -- state out ------------------------------------------------------------------------
    def summary(self) -> tuple[int, bool, str]:
        """(AssistantState constant, ready, detail) from stage health and conversation."""
        stages = list(self.stages.values())
        required = [s for s in stages if s.spec.required]
        failed = [s for s in required if s.phase == 'failed']
        down = [s for s in stages if s.phase != 'active']
        ready = all(s.phase == 'active' for s in required)
        if failed:
            return L.ERROR, False, '; '.join(f'{s.spec.name}: {s.detail}' for s in failed)
        if self._ready_at is None:
            parts = [f'{s.spec.name}: {s.detail or s.label}' for s in down]
            return L.STARTING, False, 'starting: ' + '; '.join(parts)
        if not ready:
            parts = [f'{s.spec.name}: {s.detail or s.label}' for s in down]
            return L.DEGRADED, False, '; '.join(parts)
        with self._state_lock:
            conv = self._conv_state
        detail = ''
        if self._governor.rung:
            detail = (f'governor step {self._governor.rung}/{len(self._ladder)}: '
                      f'{self._governor.reason}')
            if conv == L.IDLE:
                conv = L.DEGRADED
        elif down:
            detail = '; '.join(f'{s.spec.name}: {s.detail or s.label}' for s in down)
            if conv == L.IDLE:
                conv = L.DEGRADED
        return conv, True, detail

    def _publish_state(self) -> None:
        state, ready, detail = self.summary()
        with self._state_lock:
            turn = self._turn_id
        key = (state, ready, detail, turn)
        if key == self._last_published:
            return
        self._last_published = key
        msg = AssistantState(state=state, ready=ready, detail=detail, turn_id=turn)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._state_pub.publish(msg)
        self._write_state_file(state, ready, detail)

    def _write_state_file(self, state: int, ready: bool, detail: str) -> None:
        if self._run_dir is None:
            return
        data = {
            'state': L.STATE_NAMES[state], 'ready': ready, 'detail': detail,
            'ready_after_s': None if self._ready_at is None else self._ready_at - self._t0,
            'governor_step': self._governor.rung,
            'time': time.time(),
            'stages': {
                name: {'phase': st.phase, 'state': st.label, 'pid': st.pid,
                       'restarts': st.tracker.total, 'recoveries': st.recoveries,
                       'last_recovery_s': st.last_recovery_s, 'detail': st.detail}
                for name, st in self.stages.items()},
        }
        path = self._run_dir / 'state.json'
        tmp = path.with_suffix('.tmp')
        try:
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass

    def _publish_diagnostics(self) -> None:
        state, ready, detail = self.summary()
        level = DiagnosticStatus.OK if ready and state != L.DEGRADED else (
            DiagnosticStatus.ERROR if state == L.ERROR else DiagnosticStatus.WARN)
        overall = DiagnosticStatus(level=level, name=self.get_fully_qualified_name(),
                                   message=detail or ('ready' if ready else 'not ready'),
                                   hardware_id='wallie')
        overall.values = [KeyValue(key='state', value=L.STATE_NAMES[state]),
                          KeyValue(key='ready', value=str(ready)),
                          KeyValue(key='governor_step', value=str(self._governor.rung))]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [overall]
        for name, st in self.stages.items():
            lvl = DiagnosticStatus.OK if st.phase == 'active' else (
                DiagnosticStatus.ERROR if st.phase == 'failed' else DiagnosticStatus.WARN)
            s = DiagnosticStatus(level=lvl, name=f'{self.get_fully_qualified_name()}/{name}',
                                 message=st.detail or st.phase, hardware_id='wallie')
            s.values = [KeyValue(key=k, value=str(v)) for k, v in (
                ('phase', st.phase), ('lifecycle_state', st.label), ('pid', st.pid),
                ('restarts', st.tracker.total), ('recoveries', st.recoveries),
                ('last_recovery_s', '' if st.last_recovery_s is None
                 else f'{st.last_recovery_s:.3f}'))]
            arr.status.append(s)
        self._diag_pub.publish(arr)


def main(args: list[str] | None = None) -> None:
    """Shutdown-safe main loop (as wallie_common.runtime) plus SIGHUP = reload config."""
    apply_privacy_env()
    stop = threading.Event()
    reload = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = ManagerNode()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    spin = threading.Thread(target=_spin, args=(executor, stop), daemon=True)
    code = 0
    try:
        spin.start()
        node.start()
        while not stop.is_set():
            if reload.wait(0.1):
                reload.clear()
                node.get_logger().info('SIGHUP: reloading configuration')
                threading.Thread(target=node.reload_config, daemon=True).start()
    except Exception as exc:
        node.get_logger().fatal(f'unhandled exception: {exc!r}')
        code = 1
    finally:
        watchdog = shutdown_watchdog(node, code)
        try:
            node.stop()   # needs the executor still spinning
        finally:
            _SPIN_STOP.set()
            spin.join(2.0)
            teardown(node, executor)
            watchdog.cancel()
            ignore_stop_signals()
    sys.exit(code)


_SPIN_STOP = threading.Event()


def _spin(executor, _stop: threading.Event) -> None:
    while not _SPIN_STOP.is_set() and rclpy.ok():
        try:
            executor.spin_once(timeout_sec=0.05)
        except Exception:
            if _SPIN_STOP.is_set():
                return


if __name__ == '__main__':
    main()
