"""Bring-up benchmark: `wallie up` -> ready (cold and warm), and recovery after kill -9.

    .venv/bin/python -m wallie_cli.bringup_bench [--runs 5] [--kills 3] [--json out.json]

Runs the real graph headless (capture from a topic nobody publishes, player into a
real-time null sink, no wake word). "cold" runs first evict the model files from the page
cache (posix_fadvise DONTNEED; Python packages and shared libraries may stay cached, so
this is a "models cold" start, not a reboot); "warm" runs follow each other. Recovery is
the time from SIGKILL of a stage's process to the manager reporting it active again; the
kills of one stage are spaced more than restart.window_s (set to 10 s here) apart, so each
is a first crash (0.5 s backoff), as a user sees a single crash.
Prints median / p95 / max tables and writes JSON. Timings on a shared 2-core machine are
noisy: compare medians.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wallie_bringup import graph

STAGES = [s.name for s in graph.stages()]


def _evict_models() -> int:
    from wallie_common.model_store import store_dir
    n = 0
    for path in store_dir().rglob('*'):
        if path.is_file():
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    n += 1
                finally:
                    os.close(fd)
            except OSError:
                pass
    return n


class Run:
    """One timed `wallie up` run in its own run directory and ROS domain."""

    def __init__(self, work: Path, index: int) -> None:
        self.run_dir = work / f'run{index}'
        env = dict(os.environ)
        env.setdefault('WALLIE_HOME', str(work / 'home'))
        env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        env.setdefault('ROS_DOMAIN_ID', str(150 + os.getpid() % 80))
        env.setdefault('ROS_LOG_DIR', str(work / 'roslog'))
        exe = str(Path(sys.executable).with_name('wallie'))
        self.log = open(work / f'up{index}.log', 'w')
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [exe, 'up', '--output', 'null', '--no-wake', '--run-dir', str(self.run_dir),
             '--set', 'capture:source=topic', '--set', 'manager:watch.period_s=0.2',
             # every kill counts as a first crash (backoff 0.5 s), not a growing series
             '--set', 'manager:restart.window_s=10.0', '--set', 'manager:governor.enabled=false'],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def state(self) -> dict:
        try:
            return json.loads((self.run_dir / 'state.json').read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, pred, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return time.monotonic()
            if self.proc.poll() is not None:
                raise RuntimeError(f'wallie up exited ({self.proc.returncode})')
            time.sleep(0.02)
        raise TimeoutError('timed out')

    def pid(self, name: str) -> int | None:
        try:
            return int((self.run_dir / 'pids' / name).read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def stats(values: list[float]) -> dict:
    """n, median, p95, max and min of `values` ({} when empty)."""
    if not values:
        return {}
    vs = sorted(values)
    p95 = vs[min(len(vs) - 1, int(round(0.95 * (len(vs) - 1))))]
    return {'n': len(vs), 'median': statistics.median(vs), 'p95': p95, 'max': vs[-1],
            'min': vs[0]}


def main(argv: list[str] | None = None) -> int:
    """Run the bring-up benchmark: start-ups to ready, then kill -9 of each stage; print the
    table and write the JSON results."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--runs', type=int, default=4, help='warm start-ups (default 4)')
    ap.add_argument('--cold', type=int, default=2, help='cold start-ups (default 2)')
    ap.add_argument('--kills', type=int, default=3, help='kills per stage (default 3)')
    ap.add_argument('--json', default='bench-results/bringup.json')
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix='wallie-bringup-bench-'))
    results: dict = {'ready_s': {'cold': [], 'warm': []}, 'recovery_s': {s: [] for s in STAGES},
                     'manager_ready_s': [], 'machine': os.uname().nodename,
                     'cpus': os.cpu_count(), 'load_avg_start': os.getloadavg()}
    index = 0
    plan = ['cold'] * args.cold + ['warm'] * args.runs
    for i, kind in enumerate(plan):
        if kind == 'cold':
            _evict_models()
        run = Run(work, index)
        index += 1
        try:
            t = run.wait(lambda r=run: r.state().get('ready'), 300) - run.t0
            results['ready_s'][kind].append(t)
            results['manager_ready_s'].append(run.state().get('ready_after_s'))
            print(f'{kind} start-up {i + 1}/{len(plan)}: ready after {t:.2f} s', flush=True)
            if i == len(plan) - 1 and args.kills:
                for k in range(args.kills):
                    for stage in STAGES:
                        old = run.pid(stage)
                        before = run.state()['stages'][stage].get('recoveries', 0)
                        t_kill = time.monotonic()
                        os.kill(old, signal.SIGKILL)
                        run.wait(lambda r=run, s=stage, o=old, b=before:
                                 r.pid(s) not in (None, o) and
                                 r.state()['stages'][s].get('phase') == 'active' and
                                 r.state()['stages'][s].get('recoveries', 0) > b, 300)
                        dt = time.monotonic() - t_kill
                        results['recovery_s'][stage].append(dt)
                        print(f'  kill -9 {stage} ({k + 1}/{args.kills}): active again after '
                              f'{dt:.2f} s', flush=True)
                        run.wait(lambda r=run: r.state().get('ready'), 120)
                        time.sleep(1.0)
        finally:
            run.stop()
    results['load_avg_end'] = os.getloadavg()
    summary = {'ready_s': {k: stats(v) for k, v in results['ready_s'].items()},
               'recovery_s': {k: stats(v) for k, v in results['recovery_s'].items()}}
    results['summary'] = summary
    print('\n| measurement | n | median s | p95 s | max s |\n|---|---|---|---|---|')
    for kind, s in summary['ready_s'].items():
        if s:
            print(f'| up -> ready ({kind}) | {s["n"]} | {s["median"]:.2f} | {s["p95"]:.2f} | '
                  f'{s["max"]:.2f} |')
    for stage, s in summary['recovery_s'].items():
        if s:
            print(f'| kill -9 {stage} -> active | {s["n"]} | {s["median"]:.2f} | '
                  f'{s["p95"]:.2f} | {s["max"]:.2f} |')
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f'\nwrote {out}; logs in {work}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
