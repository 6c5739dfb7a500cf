"""`wallie up` without a ROS distro: the same nodes, parameters and manager as the launch file.

prepare() resolves the configuration layers into one parameter file, picks the nodes from
wallie_bringup.graph and writes a run directory; run() starts them under the Supervisor, forwards
SIGHUP to the manager (which re-reads config.toml and applies it live), prints what
happens, and on Ctrl-C/SIGTERM stops everything in order. Pure Python (no rclpy).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from wallie_bringup import config as wconfig
from wallie_bringup import graph as wgraph
from wallie_bringup.supervisor import ProcSpec, Supervisor, describe_exit

KEEP_RUN_DIRS = 5


class BringupError(RuntimeError):
    """`wallie up` cannot start; the message says why and what to do."""


@dataclass
class Prepared:
    """A prepared run: its directory, resolved parameters, nodes and process specs."""

    run_dir: Path
    resolved: wconfig.Resolved
    nodes: tuple[wgraph.NodeSpec, ...]
    procs: list[ProcSpec]
    skipped: list[str] = field(default_factory=list)
    namespace: str = ''
    check: list[str] | None = None      # argv of the parameter check (run in parallel)


def runs_root(environ: dict[str, str] | None = None) -> Path:
    """Where the run directories of `wallie up` go: <Wallie home>/run."""
    env = os.environ if environ is None else environ
    return wconfig.home_dir(env) / 'run'


def make_run_dir(base: str | os.PathLike | None = None) -> Path:
    """A fresh private run directory; only the newest KEEP_RUN_DIRS are kept."""
    if base is not None:
        path = Path(base).expanduser()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = root / f'{time.strftime("%Y%m%d-%H%M%S")}-{os.getpid()}'
    path.mkdir(mode=0o700)
    old = sorted((p for p in root.iterdir() if p.is_dir() and p != path),
                 key=lambda p: p.stat().st_mtime)
    for p in old[:max(0, len(old) - (KEEP_RUN_DIRS - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    latest = root / 'latest'
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(path.name)
    except OSError:
        pass
    return path


def prepare(run: wconfig.RunConfig, graph_file: str | None = None,
            only: Sequence[str] = (), skip: Sequence[str] = (),
            run_dir: str | os.PathLike | None = None, namespace: str = '',
            log_level: str | None = None, check_values: bool = True) -> Prepared:
    """Resolve configuration and nodes, write the run directory; start nothing."""
    resolved = wconfig.resolve(run)
    nodes = wgraph.load_graph(graph_file)
    nodes = wgraph.select(nodes, only=only or None, skip=skip)
    launchable: list[tuple[wgraph.NodeSpec, list[str]]] = []
    missing: list[wgraph.NodeSpec] = []
    skipped: list[wgraph.NodeSpec] = []
    for spec in nodes:
        argv = wgraph.find_executable(spec)
        if argv is not None and not spec.command:
            module = entry_module(spec.executable)
            if module is not None and not module_exists(module):
                argv = None
        if argv is None:
            (skipped if spec.optional else missing).append(spec)
            continue
        launchable.append((spec, argv))
    if missing:
        lines = [f'  {s.name}: {s.package} {s.executable}' for s in missing]
        raise BringupError(
            'not built yet: these nodes are not installed:\n' + '\n'.join(lines) +
            '\nRun scripts/setup.sh (or colcon build), or start a subset with --only/--skip.')
    nodes = tuple(s for s, _ in launchable)
    path = make_run_dir(run_dir)
    (path / 'run.json').write_text(run.to_json())
    params_file = wconfig.write_params_file(resolved.params, path / 'params.yaml')
    graph_path = wgraph.dump_graph(nodes, path / 'graph.yaml')
    stage_names = [s.name for s in wgraph.activation_order(nodes)]
    level = log_level or resolved.log_level
    procs = []
    for spec, argv in launchable:
        extra: dict[str, Any] = {}
        if spec.name == wgraph.MANAGER:
            extra = {'run_dir': str(path), 'graph_file': str(graph_path),
                     'stages': stage_names}
        args = wgraph.node_argv(spec, params_file, namespace, level, extra)
        procs.append(ProcSpec(spec.name, argv + args, respawn=spec.respawn,
                              respawn_delay_s=spec.respawn_delay_s))
    check = None
    if check_values:
        # The parameter values are checked against the nodes' own tables in a separate
        # process, in parallel with the start-up (run() stops everything if it fails).
        data = {'params': resolved.params,
                'sources': [[n, p, src] for (n, p), src in resolved.sources.items()],
                'nodes': [[s.name, s.package, s.executable] for s in nodes if not s.command]}
        (path / 'check.json').write_text(json.dumps(data))
        check = [sys.executable, '-m', 'wallie_bringup.config', 'check', str(path / 'check.json')]
    return Prepared(path, resolved, nodes, procs, [s.name for s in skipped], namespace,
                    check)


def launch_plan_for(profile: str = '', params_file: str = '', config_file: str = '',
                    use_respawn: bool = True, log_level: str = '',
                    autostart: bool = True, skip: Sequence[str] = (),
                    cli_params: wconfig.Params | None = None,
                    run_dir: str | os.PathLike | None = None) -> tuple[list[dict], Path]:
    """What bringup.launch.py starts: the same layers and graph as `wallie up`.

    Resolves the configuration into ``<run dir>/params.yaml`` and returns the
    wallie_bringup.graph.launch_plan() entries (one keyword dict per node) and the run directory.
    The namespace is left to the launch file (PushROSNamespace).
    """
    run = wconfig.RunConfig(profile=profile or None,
                            params_files=(str(Path(params_file).expanduser().resolve()),)
                            if params_file else (),
                            config_file=config_file or None, cli_params=cli_params or {})
    resolved = wconfig.resolve(run)
    nodes = wgraph.select(wgraph.NODES, skip=skip)
    # An optional node that is not installed (e.g. metrics) is left out rather than failing
    # the whole launch.
    nodes = tuple(n for n in nodes if not n.optional or wgraph.find_executable(n))
    path = make_run_dir(run_dir)
    (path / 'run.json').write_text(run.to_json())
    params = wconfig.write_params_file(resolved.params, path / 'params.yaml')
    graph_path = wgraph.dump_graph(nodes, path / 'graph.yaml')
    options = wgraph.LaunchOptions(
        namespace='', params_files=(str(params),), use_respawn=use_respawn,
        log_level=log_level or resolved.log_level,
        extra_params={wgraph.MANAGER: {'run_dir': str(path), 'graph_file': str(graph_path),
                                       'autostart': bool(autostart)}})
    return wgraph.launch_plan(options, nodes), path


def entry_module(executable: str) -> str | None:
    """The module of console script `executable`, or None if no installed distribution declares
    it."""
    from importlib import metadata
    for ep in metadata.entry_points(group='console_scripts'):
        if ep.name == executable:
            return ep.value.split(':', 1)[0]
    return None


def module_exists(module: str) -> bool:
    """True if `module` can be imported (found without importing it)."""
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class _Flags:
    def __init__(self) -> None:
        self.stop = False
        self.hup = False
        self.signals = 0


def run(prep: Prepared, echo: Callable[[str], None] = print, verbose: bool = False,
        stop_timeout_s: float = 10.0, max_seconds: float | None = None) -> int:
    """Run until Ctrl-C/SIGTERM (or `max_seconds`); return the exit code."""
    t0 = time.monotonic()
    flags = _Flags()

    def on_stop(signum, _frame):
        flags.stop = True
        flags.signals += 1
        if flags.signals >= 3:   # third Ctrl-C: stop waiting politely
            raise KeyboardInterrupt

    def on_hup(_signum, _frame):
        flags.hup = True

    def on_event(kind: str, name: str, d: dict) -> None:
        if kind == 'started':
            extra = '' if d['start'] == 1 else f' (restart {d["start"] - 1})'
            echo(f'[wallie] {name}: started, pid {d["pid"]}{extra}')
        elif kind == 'exited':
            if d.get('respawn') is False:
                echo(f'[wallie] {name}: {describe_exit(d["code"])}; not respawned')
            else:
                echo(f'[wallie] {name}: {describe_exit(d["code"])} after '
                     f'{d["uptime_s"]:.1f} s; respawning in {d["respawn_in_s"]:.1f} s')
        elif kind == 'gave_up':
            echo(f'[wallie] {name}: {describe_exit(d["code"])}; exited {d["exits"]} times '
                 f'within {d["window_s"]:.0f} s: restart loop, giving up. '
                 f'Log: {prep.run_dir / "logs" / (name + ".log")}')
        elif kind == 'kill':
            echo(f'[wallie] {name}: did not stop within {d["after_s"]:.0f} s; killed')
        elif kind == 'failed':
            echo(f'[wallie] {name}: cannot start: {d["error"]}')

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    # The process respawn policy uses the manager's restart.* parameters (one config).
    mp = prep.resolved.params.get(wgraph.MANAGER, {})
    sup = Supervisor(prep.procs, prep.run_dir, on_event,
                     max_restarts=int(mp.get('restart.max_restarts', 5)),
                     window_s=float(mp.get('restart.window_s', 120.0)),
                     backoff_max_s=float(mp.get('restart.backoff_max_s', 30.0)))
    for w in prep.resolved.warnings:
        echo(f'[wallie] warning: {w}')
    for name in prep.skipped:
        echo(f'[wallie] {name}: not installed; skipped (optional)')
    echo(f'[wallie] profile {prep.resolved.profile}; parameters {prep.run_dir}/params.yaml; '
         f'logs {prep.run_dir}/logs/')
    tails = _Tails(prep.run_dir / 'logs') if verbose else None
    state_file = prep.run_dir / 'state.json'
    last_state: tuple | None = None
    code = 0
    checker = None
    if prep.check:
        checker = subprocess.Popen(prep.check, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
    try:
        sup.start()
        while not flags.stop:
            sup.poll()
            if checker is not None and checker.poll() is not None:
                out, err = checker.communicate()
                if checker.returncode != 0:
                    try:
                        problems = json.loads(out)
                    except ValueError:
                        problems = [f'parameter check failed: {err.strip()[-500:]}']
                    echo('[wallie] invalid configuration (a node would refuse it):\n  ' +
                         '\n  '.join(problems))
                    code = 2
                    break
                checker = None
            if flags.hup:
                flags.hup = False
                if sup.send(wgraph.MANAGER, signal.SIGHUP):
                    echo('[wallie] SIGHUP: re-reading config.toml (manager applies changes)')
                else:
                    echo('[wallie] SIGHUP: manager not running; nothing reloaded')
            last_state = _report_state(state_file, last_state, echo, t0)
            if tails:
                tails.pump(echo)
            if max_seconds is not None and time.monotonic() - t0 >= max_seconds:
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        stop_timeout_s = min(stop_timeout_s, 2.0)
    finally:
        if checker is not None and checker.poll() is None:
            checker.kill()
            checker.wait()
        echo('[wallie] stopping...')
        codes = sup.stop(first=[wgraph.MANAGER], first_timeout_s=5.0, timeout_s=stop_timeout_s)
        if tails:
            tails.pump(echo)
        for s, h in old.items():
            signal.signal(s, h)
        _mark_stopped(state_file)
        bad = {n: c for n, c in codes.items() if c not in (0, None, -signal.SIGINT)}
        if bad:
            echo('[wallie] stopped; unclean exits: ' +
                 ', '.join(f'{n} ({describe_exit(c)})' for n, c in bad.items()))
        else:
            echo('[wallie] stopped cleanly')
    return code


def _mark_stopped(path: Path) -> None:
    """Leave a state.json that says the run is over (for `wallie status`)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {'stages': {}}
    data.update(state='stopped', ready=False, detail='wallie up has stopped', time=time.time())
    for st in data.get('stages', {}).values():
        st.update(phase='stopped', state='gone', pid=None)
    try:
        path.write_text(json.dumps(data, indent=1))
    except OSError:
        pass


def _report_state(path: Path, last: tuple | None, echo: Callable[[str], None],
                  t0: float) -> tuple | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return last
    key = (data.get('state'), data.get('ready'), data.get('detail'))
    if key == last:
        return last
    if data.get('ready') and (last is None or not last[1]):
        if data.get('ready_after_s') is not None and last is not None and last[0] != 'starting':
            echo(f'[wallie] ready again ({data["state"]})')
        else:
            echo(f'[wallie] READY ({data["state"]}) {time.monotonic() - t0:.2f} s after start')
    elif data.get('state') in ('degraded', 'error') or (last and last[1] and
                                                        not data.get('ready')):
        echo(f'[wallie] {data["state"]}: {data.get("detail", "")}')
    return key


class _Tails:
    """Echo new lines of the nodes' log files (non-blocking; children never wait on us)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.offsets: dict[Path, int] = {}
        self.partial: dict[Path, bytes] = {}

    def pump(self, echo: Callable[[str], None]) -> None:
        for path in sorted(self.log_dir.glob('*.log')):
            try:
                with open(path, 'rb') as fh:
                    fh.seek(self.offsets.get(path, 0))
                    data = fh.read(1 << 16)
                    self.offsets[path] = fh.tell()
            except OSError:
                continue
            if not data:
                continue
            data = self.partial.pop(path, b'') + data
            lines = data.split(b'\n')
            if lines[-1]:
                self.partial[path] = lines[-1]
            for line in lines[:-1]:
                if line.strip():
                    echo(f'{path.stem:>10} | {line.decode(errors="replace")}')
