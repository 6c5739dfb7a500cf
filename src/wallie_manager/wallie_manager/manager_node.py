"""The manager: brings the stages up, keeps them up, and says whether Wallie is ready.

This module is the ROS side: parameters, service clients, topics, state and diagnostics
out, config reload. What it does with them lives in plain modules:
- stage_watcher.StageWatcher drives every lifecycle stage configure -> activate (all
  configure at once, each activates once the stages it depends on are active), never with a
  transition invalid from the node's current state, and watches the stages (pid files of
  `wallie up`, GetState polls, the /diagnostics heartbeat): a crashed, errored, finalized
  or hung stage is brought back to active with exponential backoff; a restart loop is
  capped and reported. RosLifecycleClient below is its link to a stage.
- Reports readiness and what the assistant is doing on `assistant/state` (AssistantState,
  transient local) and on /diagnostics, and in `<run dir>/state.json`.
- governor.Ladder steps a configured ladder down on GPU OOM or sustained latency over
  budget, and back up when healthy (parameters, and lifecycle reloads where needed).
- Keeps the conversation history in RAM (the LLM publishes it on `llm/history`) and gives
  it back to a restarted LLM (parameter `llm.history_json`) before it is configured.
- SIGHUP (or the `~/reload_config` service) re-reads config.toml and applies changes live.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from std_msgs.msg import String
from std_srvs.srv import Trigger

from wallie_bringup import config as wconfig
from wallie_bringup import graph as wgraph
from wallie_common import params as P
from wallie_common import services, timeutil
from wallie_common.node_base import DIAGNOSTICS_TOPIC
from wallie_common.qos import EVENT_QOS, STATE_QOS
from wallie_common.runtime import main_for
from wallie_interfaces.msg import (
    AssistantState,
    PlaybackEvent,
    StageStamp,
    VoiceActivity,
    WakeWord,
)
from wallie_manager import governor as G
from wallie_manager import manager_logic as L
from wallie_manager.stage_watcher import Processes, Stage, StageWatcher, WatchConfig

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
    P.Param('watch.active_poll_s', 5.0,
            'An active stage whose /diagnostics heartbeat is fresh is asked for its '
            'lifecycle state only this often (its process is still checked every '
            'watch.period_s); an idle graph then makes few service calls.',
            min=0.05, max=600.0),
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


class RosLifecycleClient:
    """The StageWatcher's LifecycleClient over a stage's standard lifecycle and parameter
    services (wallie_common.services.call; no answer is None)."""

    def __init__(self, node: ManagerNode, name: str, fqn: str) -> None:
        self.node, self.name = node, name
        cbg = node.cbg
        self._get_state = node.create_client(GetState, f'{fqn}/get_state', callback_group=cbg)
        self._change = node.create_client(ChangeState, f'{fqn}/change_state',
                                          callback_group=cbg)
        self.set_params_client = node.create_client(SetParameters, f'{fqn}/set_parameters',
                                                    callback_group=cbg)
        self._get_params = node.create_client(GetParameters, f'{fqn}/get_parameters',
                                              callback_group=cbg)

    def get_state(self, timeout: float) -> str | None:
        """GetState: the state label, None without an answer."""
        res = self.node.call(self._get_state, GetState.Request(), timeout)
        return None if res is None else res.current_state.label

    def change_state(self, transition: str, timeout: float,
                     abort: Callable[[], bool]) -> bool | None:
        """ChangeState by id (and label): success, None without an answer."""
        req = ChangeState.Request()
        req.transition.id = L.TRANSITIONS[transition][0]
        if self.node.p['lifecycle.send_labels']:
            req.transition.label = L.LABELS[transition]
        res = self.node.call(self._change, req, timeout, abort=abort)
        return None if res is None else bool(res.success)

    def set_params(self, values: Mapping[str, Any], why: str) -> list[str]:
        """SetParameters: the reasons of refused values."""
        return self.node.set_stage_params(self.name, dict(values), why)

    def get_params(self, names: list[str]) -> dict[str, Any]:
        """GetParameters: {name: value} ({} without an answer)."""
        res = self.node.call(self._get_params, GetParameters.Request(names=names),
                             self.node.p['lifecycle.call_timeout_s'])
        if res is None:
            return {}
        return {n: parameter_value_to_python(v) for n, v in zip(names, res.values)}


class ManagerNode(Node):
    """Lifecycle manager, watchdog, governor and readiness reporter of the Wallie graph.

    The ROS side only: the per-stage state machine is the StageWatcher (stage_watcher.py),
    the ladder the governor (governor.py).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('manager', **kwargs)
        self._specs = {p.name: p for p in PARAMS}
        P.declare(self, PARAMS)
        for name, desc in ARRAY_PARAMS.items():
            self.declare_parameter(name, Parameter.Type.STRING_ARRAY,
                                   P.descriptor(P.Param(name, [], desc)))
        self.p: dict[str, Any] = P.values(self, PARAMS)
        self.add_on_set_parameters_callback(self._validate_params)
        self.add_post_set_parameters_callback(self._apply_params)
        self.cbg = ReentrantCallbackGroup()
        self._run_dir = Path(self.p['run_dir']).expanduser() if self.p['run_dir'] else None

        nodes = wgraph.load_graph(self.p['graph_file'] or None)
        wanted = self._array('stages')
        if wanted:
            nodes = wgraph.select(nodes, only=wanted)
        ns = self.get_namespace()
        self._stage_clients: dict[str, RosLifecycleClient] = {}
        managed = []
        for spec in wgraph.activation_order(nodes):
            fqn = wgraph.fq_name(spec.name, ns)
            self._stage_clients[spec.name] = RosLifecycleClient(self, spec.name, fqn)
            managed.append((spec, fqn, self._stage_clients[spec.name]))
        self.watcher = StageWatcher(
            managed, config=WatchConfig.from_params(self.p), logger=self.get_logger(),
            processes=Processes(self._run_dir), instance_params=self._instance_params)
        self.stages: dict[str, Stage] = self.watcher.stages
        self._by_fqn = {st.fqn: st for st in self.stages.values()}
        self._oom_marks: dict[str, str] = {}   # stage: its last OOM report
        # SetParameters clients for every other node too (config reload reaches metrics).
        self._param_clients = {n: c.set_params_client for n, c in self._stage_clients.items()}
        for spec in nodes:
            if spec.name not in self._param_clients and spec.name != wgraph.MANAGER:
                self._param_clients[spec.name] = self.create_client(
                    SetParameters, f'{wgraph.fq_name(spec.name, ns)}/set_parameters',
                    callback_group=self.cbg)

        self.governor = G.Ladder(
            G.parse_ladder(self._array('governor.ladder')),
            G.Governor(rungs=0, budget_ms=self.p['governor.latency_budget_ms'],
                       window=self.p['governor.window_turns'],
                       up_turns=self.p['governor.step_up_turns'],
                       up_ratio=self.p['governor.step_up_ratio'],
                       cooldown_s=self.p['governor.cooldown_s']),
            nodes=self.stages, enabled=self.p['governor.enabled'], logger=self.get_logger(),
            get_params=lambda n, names: self._stage_clients[n].get_params(names),
            set_params=self.set_stage_params,
            reload=lambda n, values, why: self.watcher.reload(self.stages[n], values, why))
        self._turns = G.TurnLatency()

        # Conversation memory (RAM only).
        self._history: str | None = None
        self._history_lock = threading.Lock()

        # Conversation state.
        self._conv_state = L.IDLE
        self._turn_id = ''
        self._state_lock = threading.Lock()
        self._last_published: tuple | None = None

        self._state_pub = self.create_publisher(AssistantState, 'assistant/state', STATE_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 50,
                                 callback_group=self.cbg)
        self.create_subscription(VoiceActivity, 'voice/activity', self._on_activity, EVENT_QOS)
        self.create_subscription(WakeWord, 'voice/wake', self._on_wake, EVENT_QOS)
        self.create_subscription(PlaybackEvent, 'playback/events', self._on_playback, EVENT_QOS)
        self.create_subscription(StageStamp, 'metrics/stamps', self._on_stamp, EVENT_QOS)
        self.create_subscription(String, self.p['memory.topic'], self._on_history, STATE_QOS)
        self.create_service(Trigger, '~/reload_config', self._on_reload_srv,
                            callback_group=self.cbg)
        self.create_timer(0.2, self._publish_state, callback_group=self.cbg)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=self.cbg)
        self._reload_lock = threading.Lock()
        self.get_logger().info(
            f'managing {len(self.stages)} stage(s) in activation order: '
            f'{", ".join(self.stages)}; governor ladder: {len(self.governor.rungs)} step(s)')

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
                    G.parse_ladder(p.value or [])
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
        g = self.governor.policy
        g.budget_ms = self.p['governor.latency_budget_ms']
        g.window = self.p['governor.window_turns']
        g.up_turns = self.p['governor.step_up_turns']
        g.up_ratio = self.p['governor.step_up_ratio']
        g.cooldown_s = self.p['governor.cooldown_s']
        self.governor.enabled = self.p['governor.enabled']
        self.watcher.reconfigure(WatchConfig.from_params(self.p))
        if any(p.name == 'governor.ladder' for p in params):
            self.governor.set_rungs(G.parse_ladder(self._array('governor.ladder')))

    # -- start / stop ---------------------------------------------------------------------
    def start(self) -> None:
        """Start watching (and, with autostart, bringing up) the stages."""
        self.watcher.start(autostart=self.p['autostart'])

    def stop(self) -> None:
        """Stop watching; deactivate the stages in reverse order within a time budget."""
        self.watcher.stop(self.p['shutdown.deactivate_stages'], self.p['shutdown.timeout_s'])

    # -- service calls --------------------------------------------------------------------
    @staticmethod
    def call(client, request, timeout: float, abort: Callable[[], bool] | None = None):
        """Call a service from a worker thread; None on timeout, no server or abort."""
        try:
            return services.call(client, request, timeout, abort=abort)
        except Exception:  # ServiceCallError, or the response could not be taken (node gone)
            return None

    # -- restarted instances: parameters and history --------------------------------------
    def _instance_params(self, st: Stage) -> dict[str, Any]:
        """Before a configure: the governor's values and, after a crash, the history."""
        values = self.governor.overlay_for(st.name)
        if self.p['memory.enabled'] and st.name == self.p['memory.stage'] and st.ever_active:
            with self._history_lock:
                history = self._history
            if history is not None:
                values[self.p['memory.restore_param']] = history
        return values

    def _on_history(self, msg: String) -> None:
        """Keep the latest conversation history the memory stage published (RAM only)."""
        if self.p['memory.enabled']:
            with self._history_lock:
                self._history = msg.data

    def set_stage_params(self, name: str, values: dict[str, Any], why: str) -> list[str]:
        """SetParameters on a stage; return the reasons of rejected values."""
        results = self._set_node_params(name, values, why)
        if results is None:
            return [f'{name}: no answer from set_parameters']
        restore = self.p['memory.restore_param']
        if why == 'restart' and restore in values and not results.get(restore):
            self.get_logger().info(f'{name}: conversation history restored '
                                   f'({len(values[restore])} bytes)')
        return [f'{name}/{k}: {why_not}' for k, why_not in results.items() if why_not]

    def _set_node_params(self, name: str, values: dict[str, Any],
                         why: str) -> dict[str, str] | None:
        """SetParameters on any graph node, the manager too: {param: '' if accepted else
        reason}, or None without an answer."""
        if name == wgraph.MANAGER:
            return self._set_own_params(values)
        client = self._param_clients.get(name)
        if client is None:
            return None
        req = SetParameters.Request()
        try:
            req.parameters = [Parameter(k, value=v).to_parameter_msg()
                              for k, v in values.items()]
        except (TypeError, ValueError) as exc:
            return {k: f'cannot send {v!r}: {exc}' for k, v in values.items()}
        res = self.call(client, req, self.p['lifecycle.call_timeout_s'] * 2)
        if res is None:
            self.get_logger().warning(f'{why}: {name} did not answer set_parameters')
            return None
        out = {}
        for k, r in zip(values, res.results):
            out[k] = '' if r.successful else (r.reason or 'rejected')
            if not r.successful:
                self.get_logger().warning(f'{why}: {name}/{k} rejected: {out[k]}')
        return out

    # -- governor inputs ------------------------------------------------------------------
    def _on_stamp(self, msg: StageStamp) -> None:
        e2e = self._turns.add(msg.turn_id, msg.stage, timeutil.from_msg(msg.stamp))
        if e2e is not None:
            self.governor.on_latency(e2e, time.monotonic())

    def _on_oom(self, st: Stage, what: str) -> None:
        self.get_logger().error(f'{st.name}: GPU out of memory reported ({what})')
        self.governor.on_oom(time.monotonic(), f'{st.name}: {what}')

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
            accepted = wconfig.merge(old)
            applied, rejected = L.apply_changes(
                wconfig.diff(old, new.params), list(self._param_clients),
                lambda name, values: self._set_node_params(name, values, 'reload'), accepted)
            wconfig.write_params_file(accepted, old_path)
        msg = f'applied {len(applied)} change(s)'
        if applied:
            msg += ': ' + ', '.join(applied)
        if rejected:
            msg += f'; rejected {len(rejected)}: ' + '; '.join(rejected)
        self.get_logger().info(f'reload: {msg}')
        return not rejected, msg

    def _set_own_params(self, values: dict[str, Any]) -> dict[str, str]:
        out = {}
        for k, v in values.items():
            try:
                res = self.set_parameters([Parameter(k, value=v)])[0]
            except Exception as exc:
                out[k] = str(exc)
                continue
            out[k] = '' if res.successful else (res.reason or 'rejected')
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
            marker = L.oom_marker([(kv.key, kv.value) for kv in status.values],
                                  status.message)
            if marker and marker != self._oom_marks.get(st.name, ''):
                self._oom_marks[st.name] = marker
                self._on_oom(st, status.message or marker)

    # -- state out ------------------------------------------------------------------------
    def summary(self) -> tuple[int, bool, str]:
        """(AssistantState constant, ready, detail) from stage health and conversation."""
        with self._state_lock:
            conv = self._conv_state
        g = self.governor
        return L.summarize(self.stages.values(), self.watcher.ready_at is not None, conv,
                           f'governor step {g.policy.rung}/{len(g.rungs)}: {g.policy.reason}'
                           if g.policy.rung else '')

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
        if self._run_dir is not None:
            ready_at = self.watcher.ready_at
            L.write_state_file(self._run_dir / 'state.json', {
                'state': L.STATE_NAMES[state], 'ready': ready, 'detail': detail,
                'ready_after_s': None if ready_at is None else ready_at - self.watcher.t0,
                'governor_step': self.governor.policy.rung, 'time': time.time(),
                'stages': self.watcher.report()})

    def _publish_diagnostics(self) -> None:
        state, ready, detail = self.summary()
        level = DiagnosticStatus.OK if ready and state != L.DEGRADED else (
            DiagnosticStatus.ERROR if state == L.ERROR else DiagnosticStatus.WARN)
        overall = DiagnosticStatus(level=level, name=self.get_fully_qualified_name(),
                                   message=detail or ('ready' if ready else 'not ready'),
                                   hardware_id='wallie')
        overall.values = [KeyValue(key='state', value=L.STATE_NAMES[state]),
                          KeyValue(key='ready', value=str(ready)),
                          KeyValue(key='governor_step', value=str(self.governor.policy.rung))]
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


def _reload_on_hangup(node: ManagerNode) -> None:
    node.get_logger().info('SIGHUP: reloading configuration')
    node.reload_config()


# The manager starts watching once its executor spins, brings the stages down while it
# still spins, and reloads its configuration on SIGHUP; a failing callback is logged, the
# stages stay supervised.
main = main_for(ManagerNode, on_spinning=ManagerNode.start, before_stop=ManagerNode.stop,
                on_hangup=_reload_on_hangup, exit_on_spin_error=False)


if __name__ == '__main__':
    main()
