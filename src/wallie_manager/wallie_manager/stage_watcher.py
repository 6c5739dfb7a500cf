"""Brings lifecycle stages up and keeps them up, without ROS.

`StageWatcher` holds one `Stage` record per managed stage and runs its watch step: the
process check (pid files written by `wallie up`), GetState polling, failure and backoff
bookkeeping (wallie_common.restart), unresponsive and hung detection, configure -> activate
in dependency order, recovery and readiness bookkeeping. It talks to each stage through a
`LifecycleClient` (manager_node.py implements it with rclpy service clients; the unit tests
with a scripted one) and to processes through `Processes`; the logger and clock are given.

Rules it keeps: a transition is requested only after GetState returned the state it starts
from, and a transition that got no answer is followed by GetState polling until the node
settles, never by a second request. Jazzy's rclpy 7.1.6 kills a Python lifecycle node that
receives an invalid transition id, and after a SIGKILL the dead node's services linger
~20 s, so a request may reach nobody. (The ROS client also sends the transition label:
rclpy and rclcpp resolve a label against the current state and refuse an invalid one.)
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

from wallie_bringup.graph import NodeSpec
from wallie_common.restart import Backoff, RestartTracker
from wallie_manager import manager_logic as L


class LifecycleClient(Protocol):
    """How the watcher reaches one lifecycle stage (no answer is None, never an exception)."""

    def get_state(self, timeout: float) -> str | None:
        """The stage's current lifecycle state label, or None when it did not answer."""

    def change_state(self, transition: str, timeout: float,
                     abort: Callable[[], bool]) -> bool | None:
        """Request `transition` (a key of manager_logic.TRANSITIONS): True on success,
        False when refused or failed, None when no answer came (or `abort()` said stop)."""

    def set_params(self, values: Mapping[str, Any], why: str) -> list[str]:
        """Set parameters on the stage; the reasons of the values it did not take."""


class Logger(Protocol):
    """The part of a logger the watcher uses (an rclpy logger and logging.Logger both fit)."""

    def info(self, msg: str) -> Any:
        """Log at info level."""

    def warning(self, msg: str) -> Any:
        """Log at warning level."""

    def error(self, msg: str) -> Any:
        """Log at error level."""


class Processes:
    """Stage processes as `wallie up` leaves them: `<run dir>/pids/<stage>` holds the pid."""

    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = run_dir

    def read_pid(self, stage: str) -> int | None:
        """The pid in the stage's pid file (None: no run directory, no file)."""
        if self.run_dir is None:
            return None
        try:
            return int((self.run_dir / 'pids' / stage).read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self, pid: int) -> bool:
        """True while `pid` runs (a zombie counts as gone)."""
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

    def kill(self, pid: int) -> bool:
        """SIGKILL `pid`; False if that failed."""
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            return False
        return True


@dataclass
class WatchConfig:
    """The watcher's settings (manager parameters of the same names)."""

    call_timeout_s: float = 2.0            # lifecycle.call_timeout_s
    transition_timeout_s: float = 30.0     # lifecycle.transition_timeout_s
    parallel_configure: bool = True        # bringup.parallel_configure
    period_s: float = 0.5                  # watch.period_s
    unresponsive_after: int = 3            # watch.unresponsive_after
    heartbeat_timeout_s: float = 5.0       # watch.heartbeat_timeout_s
    hung_timeout_s: float = 20.0           # watch.hung_timeout_s
    respawn_timeout_s: float = 90.0        # watch.respawn_timeout_s
    backoff_initial_s: float = 0.5         # restart.*
    backoff_max_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 120.0
    cooldown_s: float = 300.0

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> WatchConfig:
        """From the manager's parameter values (dotted names)."""
        return cls(
            call_timeout_s=p['lifecycle.call_timeout_s'],
            transition_timeout_s=p['lifecycle.transition_timeout_s'],
            parallel_configure=p['bringup.parallel_configure'],
            period_s=p['watch.period_s'], unresponsive_after=p['watch.unresponsive_after'],
            heartbeat_timeout_s=p['watch.heartbeat_timeout_s'],
            hung_timeout_s=p['watch.hung_timeout_s'],
            respawn_timeout_s=p['watch.respawn_timeout_s'],
            backoff_initial_s=p['restart.backoff_initial_s'],
            backoff_max_s=p['restart.backoff_max_s'], max_restarts=p['restart.max_restarts'],
            window_s=p['restart.window_s'], cooldown_s=p['restart.cooldown_s'])

    def tune(self, tracker: RestartTracker) -> RestartTracker:
        """Give `tracker` this restart policy (its failure history stays)."""
        tracker.backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        tracker.max_restarts = self.max_restarts
        tracker.window_s = self.window_s
        tracker.cooldown_s = self.cooldown_s
        return tracker


@dataclass
class Stage:
    """What the manager knows about one stage."""

    spec: NodeSpec
    fqn: str
    client: LifecycleClient
    tracker: RestartTracker
    lock: threading.RLock = field(default_factory=threading.RLock)
    phase: str = 'starting'        # idle | starting | active | recovering | failed | stopping
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

    @property
    def name(self) -> str:
        """The stage's node name."""
        return self.spec.name


class StageWatcher:
    """Drives every stage to active and keeps it there; see the module docstring.

    `stages` are (spec, fully qualified name, client) in activation order. Before a stage
    is configured, `instance_params(stage)` gives the parameters a new instance needs
    (governor values, restored history); they are set through its client.
    """

    def __init__(self, stages: Iterable[tuple[NodeSpec, str, LifecycleClient]], *,
                 config: WatchConfig, logger: Logger, processes: Processes,
                 clock: Callable[[], float] = time.monotonic,
                 instance_params: Callable[[Stage], Mapping[str, Any]] | None = None
                 ) -> None:
        self.config = config
        self.log = logger
        self.processes = processes
        self.clock = clock
        self.instance_params = instance_params
        self.stages: dict[str, Stage] = {
            spec.name: Stage(spec=spec, fqn=fqn, client=client,
                             tracker=config.tune(RestartTracker()))
            for spec, fqn, client in stages}
        self.t0 = clock()
        self.ready_at: float | None = None
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def reconfigure(self, config: WatchConfig) -> None:
        """New settings, applied from the next step on (restart history kept)."""
        self.config = config
        for st in self.stages.values():
            config.tune(st.tracker)

    # -- threads ------------------------------------------------------------------------
    def start(self, autostart: bool = True) -> None:
        """One watch thread per stage (autostart off: stages stay idle, just reported)."""
        for st in self.stages.values():
            if not autostart:
                st.phase = 'idle'
                st.detail = 'autostart is off'
            t = threading.Thread(target=self._loop, args=(st,), name=f'watch-{st.name}',
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, deactivate: bool, timeout_s: float) -> None:
        """Stop watching; deactivate the stages in reverse order within `timeout_s`."""
        self.stopping.set()
        for st in self.stages.values():
            st.phase = 'stopping'
        for t in self._threads:
            t.join(timeout=0.5)
        if not deactivate:
            return
        deadline = self.clock() + timeout_s
        for st in reversed(list(self.stages.values())):
            left = deadline - self.clock()
            if left <= 0.05:
                break
            if st.lock.acquire(timeout=min(left, 0.5)):
                try:
                    self.transition(st, 'deactivate', timeout=max(0.1, left),
                                    quick=min(left, 0.5), shutdown_call=True)
                finally:
                    st.lock.release()

    def _loop(self, st: Stage) -> None:
        while not self.stopping.is_set():
            try:
                self.step(st)
            except Exception as exc:  # keep watching whatever happens
                self.log.error(f'{st.name}: watch step failed: {exc!r}')
            self.stopping.wait(self.config.period_s)

    # -- lifecycle requests ---------------------------------------------------------------
    def get_state(self, st: Stage, timeout: float | None = None) -> str | None:
        """GetState with `timeout` (default: the quick-call timeout)."""
        return st.client.get_state(timeout or self.config.call_timeout_s)

    def transition(self, st: Stage, transition: str, timeout: float,
                   quick: float | None = None,
                   shutdown_call: bool = False) -> tuple[str, str | None]:
        """Request `transition` only if GetState says it is valid right now.

        Returns (outcome, state): outcome is 'ok', 'failed' (the node refused or its
        callback failed), 'skipped' (not valid from the current state), 'timeout' (no
        answer: the node was then polled until it settled or the timeout passed) or
        'unreachable' (GetState unanswered).
        """
        state = self.get_state(st, quick)
        if state is None:
            return 'unreachable', None
        if not L.is_valid(transition, state):
            return 'skipped', state
        t0 = self.clock()

        def abort() -> bool:
            return self._pid_gone(st) or (self.stopping.is_set() and not shutdown_call)
        self.log.info(f'{st.name}: {transition} (from {state})')
        success = st.client.change_state(transition, timeout, abort)
        if success is None:
            # No answer: the request may have gone to a dead process's lingering service,
            # or the transition is still running. Never re-send blindly: poll until the
            # node reports a primary state (it answers GetState only between callbacks).
            settled = None
            deadline = t0 + timeout
            while self.clock() < deadline and not abort():
                settled = self.get_state(st)
                if settled in L.PRIMARY:
                    break
            st.label = settled or st.label
            return 'timeout', settled
        after = self.get_state(st)
        st.label = after or st.label
        if not success:
            return 'failed', after
        self.log.info(f'{st.name}: {transition} done in {self.clock() - t0:.2f} s -> {after}')
        return 'ok', after

    # -- processes ------------------------------------------------------------------------
    def _pid_gone(self, st: Stage) -> bool:
        pid = self.processes.read_pid(st.name)
        if pid is None:
            return False
        return pid != st.pid or not self.processes.alive(pid)

    def _check_pid(self, st: Stage) -> str | None:
        """'new' when a new process instance appeared, 'dead' when ours exited."""
        pid = self.processes.read_pid(st.name)
        if pid is None:
            return None
        if pid != st.pid:
            old, st.pid, st.pid_dead = st.pid, pid, False
            if old is not None:
                return 'new'
        if not st.pid_dead and not self.processes.alive(pid):
            st.pid_dead = True
            return 'dead'
        return None

    def _kill(self, st: Stage, why: str) -> bool:
        pid = self.processes.read_pid(st.name)
        if pid is None or not self.processes.alive(pid):
            return False
        self.log.error(f'{st.name}: {why}; killing pid {pid} to restart it')
        if not self.processes.kill(pid):
            return False
        st.killed_pid = pid
        return True

    # -- the watch step -------------------------------------------------------------------
    def failure(self, st: Stage, why: str, now: float | None = None) -> None:
        """Count a failure: schedule a restart with backoff, or give up on a restart loop."""
        now = self.clock() if now is None else now
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
            self.log.error(f'{st.name}: {st.detail}' +
                           (f'; will try again in {retry:.0f} s' if retry > 0 else ''))
            return
        st.phase = 'recovering'
        st.next_attempt_at = now + delay
        attempt = st.tracker.recent(now)
        st.detail = f'{why}; restart {attempt} in {delay:.1f} s'
        self.log.warning(f'{st.name}: {st.detail}')

    def step(self, st: Stage) -> None:
        """One check of one stage, and at most one pass towards active."""
        if st.phase in ('idle', 'stopping'):
            return
        now = self.clock()
        pid_event = self._check_pid(st)
        if pid_event == 'dead' and st.phase in ('active', 'starting', 'recovering') \
                and st.killed_pid != st.pid:
            self.failure(st, f'process {st.pid} exited', now)
        elif pid_event == 'new' and st.phase == 'active':
            self.failure(st, 'process was restarted', now)
        if st.phase == 'failed':
            if not st.tracker.may_retry(now):
                st.label = self.get_state(st) or st.label
                return
            st.phase = 'recovering'
            st.detail = 'cool-down over: trying again'
        if st.phase == 'recovering' and now < st.next_attempt_at:
            return
        if st.pid_dead:
            # Wait for the supervisor / launch to respawn the process, but not forever.
            waited = now - (st.down_since or now)
            if waited > self.config.respawn_timeout_s:
                st.phase = 'failed'
                st.tracker.gave_up_at = now
                st.detail = (f'process exited and was not restarted within {waited:.0f} s '
                             '(respawn off, or the process supervisor gave up)')
                self.log.error(f'{st.name}: {st.detail}')
            return
        # Short polls while a (re)started process comes up: the first requests may go to a
        # dead instance's lingering service and are simply lost.
        quick = self.config.call_timeout_s
        if st.phase != 'active':
            quick = min(quick, 0.5)
        state = self.get_state(st, quick)
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
            self.failure(st, f'found {state} (expected active)', now)
            # A finalized node cannot be brought back by transitions: restart its process.
            if state == 'finalized' and not self._kill(st, 'finalized'):
                st.detail += '; no pid file: restart its process'
            return
        self.drive_up(st)

    def _unanswered(self, st: Stage, now: float) -> None:
        st.misses += 1
        if st.unresponsive_since is None:
            st.unresponsive_since = now
        if st.phase != 'active':
            return
        stale = st.heartbeat_at is None or \
            now - st.heartbeat_at > self.config.heartbeat_timeout_s
        if st.misses >= self.config.unresponsive_after and stale:
            hung_for = now - st.unresponsive_since
            hung = self.config.hung_timeout_s
            if hung > 0 and hung_for >= hung:
                self._kill(st, f'unresponsive for {hung_for:.0f} s')
            self.failure(st, f'not responding ({st.misses} polls, no heartbeat)', now)

    def _now_active(self, st: Stage, now: float) -> None:
        if st.down_since is not None:
            st.last_recovery_s = now - st.down_since
            st.recoveries += 1
            self.log.warning(
                f'{st.name}: recovered (active again) {st.last_recovery_s:.2f} s after '
                f'the failure; restart #{st.tracker.total}')
        else:
            self.log.info(f'{st.name}: active')
        st.down_since = None
        st.phase = 'active'
        st.ever_active = True
        st.detail = ''
        if self.ready_at is None and self.all_required_active():
            self.ready_at = now
            self.log.info(f'READY: all {len(self.stages)} stages active '
                          f'{now - self.t0:.2f} s after the manager started')

    def all_required_active(self) -> bool:
        """True when every required stage is active."""
        return all(st.phase == 'active' for st in self.stages.values() if st.spec.required)

    def _deps_ready(self, st: Stage) -> tuple[bool, list[str]]:
        waiting = []
        for dep in st.spec.after:
            d = self.stages.get(dep)
            if d is None or d.phase == 'failed':
                continue
            if d.label != 'active' or d.phase != 'active':
                waiting.append(dep)
        return not waiting, waiting

    def drive_up(self, st: Stage) -> None:
        """One pass towards active: configure (if unconfigured), then activate."""
        with st.lock:
            if self.stopping.is_set():
                return
            state: str | None = st.label
            if state == 'unconfigured':
                if not self.config.parallel_configure:
                    ok, waiting = self._deps_ready(st)
                    if not ok:
                        st.detail = f'waiting for {", ".join(waiting)}'
                        return
                self._prepare_new_instance(st)
                st.detail = 'configuring'
                outcome, state = self.transition(st, 'configure', st.spec.configure_timeout_s)
                if outcome == 'failed':
                    self.failure(st, f'configure failed (now {state})')
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
                outcome, state = self.transition(st, 'activate',
                                                 self.config.transition_timeout_s)
                if outcome == 'failed':
                    self.failure(st, f'activate failed (now {state})')
                    return
            if state == 'active':
                self._now_active(st, self.clock())

    def _prepare_new_instance(self, st: Stage) -> None:
        values = self.instance_params(st) if self.instance_params else {}
        if values:
            st.client.set_params(values, 'restart')

    def reload(self, st: Stage, values: Mapping[str, Any], why: str) -> None:
        """deactivate -> cleanup -> set parameters -> configure -> activate."""
        with st.lock:
            for step in ('deactivate', 'cleanup'):
                outcome, _ = self.transition(st, step, self.config.transition_timeout_s)
                if outcome not in ('ok', 'skipped'):
                    self.log.error(f'{why}: {st.name} {step}: {outcome}')
                    return
            st.client.set_params(values, why)
            st.phase = 'starting'
            st.label = self.get_state(st) or st.label
        self.drive_up(st)

    # -- reporting ------------------------------------------------------------------------
    def report(self) -> dict[str, dict[str, Any]]:
        """Per stage: phase, lifecycle state, pid, restarts, recoveries (for state.json)."""
        return {name: {'phase': st.phase, 'state': st.label, 'pid': st.pid,
                       'restarts': st.tracker.total, 'recoveries': st.recoveries,
                       'last_recovery_s': st.last_recovery_s, 'detail': st.detail}
                for name, st in self.stages.items()}
