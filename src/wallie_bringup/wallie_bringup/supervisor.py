"""Process supervisor for `wallie up`: runs node executables, respawns them, stops them cleanly.

- Every child runs in its own session / process group (a terminal Ctrl-C reaches only the
  supervisor, which then stops the children in order) and gets PR_SET_PDEATHSIG=SIGKILL, so
  even a SIGKILLed supervisor leaves no orphans.
- A child that exits while we are not stopping is respawned after an exponential backoff;
  more than `max_restarts` exits within `window_s` is a restart loop: the child is given up
  and reported.
- Stop: the first group (the manager, which deactivates the stages in order) gets SIGINT,
  then the rest get SIGINT (each node runs its lifecycle shutdown), then SIGKILL to the
  process group of anything still alive after the timeout. Every child is reaped (no
  zombies). Output goes to one log file per node in the run directory; the pid of each
  running child is kept in ``<run dir>/pids/<name>`` for the manager.

Pure Python (no rclpy), Linux.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from wallie_common.restart import Backoff, RestartTracker

_PR_SET_PDEATHSIG = 1
_PRCTL: Any = None
try:
    _PRCTL = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    pass


def _child_setup() -> None:  # runs in the child between fork and exec: keep it minimal
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class ProcSpec:
    """A process to keep running."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    respawn: bool = True
    respawn_delay_s: float = 0.5


@dataclass
class Child:
    """One supervised process: its spec, restart bookkeeping and current Popen."""

    spec: ProcSpec
    tracker: RestartTracker
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    next_start_at: float | None = 0.0     # None: do not start (gave up / stopped)
    starts: int = 0
    exits: list = field(default_factory=list)   # (monotonic time, returncode)
    log_path: Path | None = None
    gave_up: bool = False


Event = Callable[[str, str, dict], None]   # (kind, name, details)


class Supervisor:
    """Start, watch, respawn and stop a set of processes."""

    def __init__(self, specs: Iterable[ProcSpec], run_dir: str | os.PathLike,
                 on_event: Event | None = None, max_restarts: int = 5,
                 window_s: float = 120.0, backoff_max_s: float = 30.0) -> None:
        self.run_dir = Path(run_dir)
        (self.run_dir / 'logs').mkdir(parents=True, exist_ok=True)
        (self.run_dir / 'pids').mkdir(parents=True, exist_ok=True)
        self.children: dict[str, Child] = {}
        for spec in specs:
            tracker = RestartTracker(backoff=Backoff(spec.respawn_delay_s, backoff_max_s),
                                     max_restarts=max_restarts, window_s=window_s,
                                     cooldown_s=0.0)
            self.children[spec.name] = Child(spec, tracker,
                                             log_path=self.run_dir / 'logs' / f'{spec.name}.log')
        self._on_event = on_event or (lambda kind, name, details: None)
        self.stopping = False
        self._cleaners: list[subprocess.Popen] = []
        self._last_clean = -1e9

    # -- running --------------------------------------------------------------------------
    def _start(self, child: Child) -> None:
        spec = child.spec
        assert child.log_path is not None
        log = open(child.log_path, 'ab', buffering=0)
        try:
            log.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} starting {spec.name}: '
                      f'{" ".join(spec.argv)}\n'.encode())
            env = dict(os.environ if spec.env is None else spec.env)
            env.setdefault('PYTHONUNBUFFERED', '1')
            child.proc = subprocess.Popen(
                list(spec.argv), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=_child_setup, close_fds=True)
        except OSError as exc:
            child.proc = None
            child.next_start_at = None
            child.gave_up = True
            self._on_event('failed', spec.name, {'error': str(exc)})
            return
        finally:
            log.close()
        child.started_at = time.monotonic()
        child.starts += 1
        child.next_start_at = None
        self._write_pid(spec.name, child.proc.pid)
        self._on_event('started', spec.name, {'pid': child.proc.pid, 'start': child.starts})

    def _write_pid(self, name: str, pid: int) -> None:
        write_pid(self.run_dir, name, pid)

    def start(self) -> None:
        for child in self.children.values():
            if child.proc is None and child.next_start_at is not None:
                self._start(child)

    def poll(self) -> None:
        """Reap exited children, schedule and perform respawns. Call often (~10 Hz)."""
        now = time.monotonic()
        for child in self.children.values():
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                code = proc.returncode
                child.exits.append((now, code))
                child.proc = None
                _kill_group(proc.pid, signal.SIGKILL)   # anything it left behind
                if code is not None and code < 0:
                    self._clean_shm(now)
                if self.stopping:
                    continue
                if not child.spec.respawn:
                    self._on_event('exited', child.spec.name, {'code': code, 'respawn': False})
                    continue
                delay = child.tracker.record_failure(now)
                if delay is None:
                    child.gave_up = True
                    child.next_start_at = None
                    self._on_event('gave_up', child.spec.name, {
                        'code': code, 'exits': child.tracker.recent(now),
                        'window_s': child.tracker.window_s})
                else:
                    child.next_start_at = now + delay
                    self._on_event('exited', child.spec.name,
                                   {'code': code, 'respawn_in_s': delay,
                                    'uptime_s': now - child.started_at})
            if child.proc is None and child.next_start_at is not None and not self.stopping \
                    and now >= child.next_start_at:
                self._start(child)

        self._cleaners = [c for c in self._cleaners if c.poll() is None]

    def _clean_shm(self, now: float, wait: bool = False) -> None:
        """A killed DDS participant leaves /dev/shm segments; `fastdds shm clean` removes
        the unused ones (never those of live processes)."""
        if now - self._last_clean < 5.0 and not wait:
            return
        cmd = shm_clean_command()
        if cmd is None:
            return
        self._last_clean = now
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            return
        if wait:
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            self._cleaners.append(proc)

    def pid(self, name: str) -> int | None:
        child = self.children.get(name)
        return child.proc.pid if child and child.proc else None

    def alive(self) -> list[str]:
        return [n for n, c in self.children.items() if c.proc and c.proc.poll() is None]

    def send(self, name: str, sig: int) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    # -- stopping -------------------------------------------------------------------------
    def stop(self, first: Sequence[str] = (), first_timeout_s: float = 5.0,
             timeout_s: float = 10.0) -> dict[str, int | None]:
        """SIGINT `first` and wait for them, SIGINT the rest, SIGKILL what is left.

        Returns each child's last exit code (negative = killed by that signal).
        """
        self.stopping = True
        for child in self.children.values():
            child.next_start_at = None
        groups = [list(first), [n for n in self.children if n not in first]]
        budgets = [first_timeout_s, timeout_s]
        for names, budget in zip(groups, budgets):
            procs: list[tuple[str, subprocess.Popen]] = []
            for n in names:
                proc = self.children[n].proc if n in self.children else None
                if proc is not None:
                    procs.append((n, proc))
            for name, proc in procs:
                if proc.poll() is None:
                    try:
                        proc.send_signal(signal.SIGINT)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + budget
            for name, proc in procs:
                left = max(0.0, deadline - time.monotonic())
                try:
                    proc.wait(left)
                except subprocess.TimeoutExpired:
                    self._on_event('kill', name, {'pid': proc.pid, 'after_s': budget})
                    _kill_group(proc.pid, signal.SIGKILL)
                    try:
                        proc.wait(5.0)
                    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
                        pass
        codes: dict[str, int | None] = {}
        for name, child in self.children.items():
            proc = child.proc
            if proc is not None:
                codes[name] = proc.poll()
                if codes[name] is not None:
                    child.exits.append((time.monotonic(), codes[name]))
                _kill_group(proc.pid, signal.SIGKILL)   # stray grandchildren
                child.proc = None
            else:
                codes[name] = child.exits[-1][1] if child.exits else None
            try:
                (self.run_dir / 'pids' / name).unlink()
            except FileNotFoundError:
                pass
        if any(c is not None and c < 0 for c in codes.values()) or \
                any(c < 0 for ch in self.children.values() for _, c in ch.exits if c is not None):
            self._clean_shm(time.monotonic(), wait=True)
        for c in self._cleaners:
            c.wait()
        return codes


def shm_clean_command() -> list[str] | None:
    """argv of Fast DDS's `fastdds shm clean` (venv tools or a ROS install), or None."""
    import shutil
    import sys
    script = Path(sys.executable).parent.parent / 'tools' / 'fastdds' / 'fastdds.py'
    if script.is_file():
        return [sys.executable, str(script), 'shm', 'clean']
    exe = shutil.which('fastdds')
    return [exe, 'shm', 'clean'] if exe else None


def write_pid(run_dir: str | os.PathLike, name: str, pid: int) -> None:
    """Record the pid of a node's current process (read by the manager)."""
    path = Path(run_dir) / 'pids' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{name}.tmp')
    tmp.write_text(str(pid))
    os.replace(tmp, path)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def describe_exit(code: int | None) -> str:
    """A process exit status in words: exit code, killing signal, or still running (None)."""
    if code is None:
        return 'still running'
    if code < 0:
        try:
            return f'killed by {signal.Signals(-code).name}'
        except ValueError:
            return f'killed by signal {-code}'
    return f'exit code {code}'
