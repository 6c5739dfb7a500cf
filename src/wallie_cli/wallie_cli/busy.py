"""A busy robot: other software on the same CPU, at normal priority, while Wallie answers.

`RobotLoad` starts a few processes that stand for a robot stack (a perception pipeline, a
planner, a controller): each one computes in short bursts and sleeps in between, all at the
niceness they inherit (normal priority), together using about `cores` of the machine's
cores. Each process stops by itself after `max_s` (the load is bounded in time even if the
benchmark is killed) and on `stop()`. What the load really got is measured from /proc (CPU
seconds of its processes over the wall time), since on a shared machine it can get less.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Sequence

BUSY_TARGET_RATIO = 2.0     # e2e median with the robot stack busy vs the quiet machine

# One process of the simulated stack: `duty` of every `period_s` spent computing (a numpy
# matrix product, like perception or planning code), the rest asleep; exits after `max_s`.
_WORKER = r'''
import sys, time
import numpy as np
duty, period, max_s = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
a = np.random.default_rng(0).random((96, 96))
end = time.monotonic() + max_s
while time.monotonic() < end:
    t0 = time.monotonic()
    while time.monotonic() - t0 < duty * period:
        a = (a @ a) / 96.0
    rest = period - (time.monotonic() - t0)
    if rest > 0:
        time.sleep(rest)
'''

CLK_TCK = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100


def _cpu_s(pid: int) -> float:
    try:
        fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK        # utime + stime


class RobotLoad:
    """`processes` bursty workers that together want `cores` cores, for at most `max_s`."""

    def __init__(self, cores: float = 1.0, processes: int = 3, period_s: float = 0.05,
                 max_s: float = 900.0) -> None:
        if not 0 < cores <= processes:
            raise ValueError(f'busy load: {cores} cores needs 0 < cores <= processes '
                             f'({processes}), one process uses at most one core')
        self.cores = cores
        self.processes = processes
        self.period_s = period_s
        self.max_s = max_s
        self._procs: list[subprocess.Popen] = []
        self._t0 = 0.0
        self._cpu: dict[int, float] = {}

    def __enter__(self) -> 'RobotLoad':
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        duty = self.cores / self.processes
        self._t0 = time.monotonic()
        for _ in range(self.processes):
            self._procs.append(subprocess.Popen(
                [sys.executable, '-c', _WORKER, f'{duty:.4f}', str(self.period_s),
                 str(self.max_s)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env={**os.environ, 'OMP_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1',
                     'MKL_NUM_THREADS': '1'}))

    def used_cores(self) -> float:
        """Cores the load has really used since it started (CPU seconds / wall seconds)."""
        wall = time.monotonic() - self._t0
        if wall <= 0:
            return 0.0
        for p in self._procs:
            if p.poll() is None:
                self._cpu[p.pid] = _cpu_s(p.pid)
        return sum(self._cpu.values()) / wall

    def stop(self) -> dict[str, Any]:
        """Stop every worker; what the load asked for and what it got."""
        used = self.used_cores() if self._procs else 0.0
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
        for p in self._procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self._procs = []
        return {'cores_wanted': self.cores, 'processes': self.processes,
                'cores_used': round(used, 2), 'nice': os.getpriority(os.PRIO_PROCESS, 0)}


def _median(values: Sequence[float]) -> float | None:
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def busy_summary(turns: Sequence[dict[str, Any]], loads: Sequence[dict[str, Any]],
                 stats: Any) -> dict[str, Any]:
    """The same turns on a quiet and on a busy machine (``condition``: quiet / busy): the e2e
    of each (`stats` of the true e2e ms), the ratio of the medians (target <=
    BUSY_TARGET_RATIO) and the turns lost under load."""
    rows = {c: [r for r in turns if r.get('condition', 'quiet') == c] for c in ('quiet', 'busy')}
    e2e = {c: stats([r['latency_ms'].get('true_e2e_ms') for r in rs if r['answered']])
           for c, rs in rows.items()}
    q, b = e2e['quiet']['p50'], e2e['busy']['p50']
    ratio = b / q if q and b else None
    lost = sum(1 for r in rows['busy'] if not r['answered'])
    return {'e2e_ms': e2e, 'p50_ratio': ratio, 'target_ratio': BUSY_TARGET_RATIO,
            'turns': len(rows['busy']), 'lost_turns': lost,
            'met': bool(ratio is not None and ratio <= BUSY_TARGET_RATIO and lost == 0),
            'load': {'cores_wanted': loads[0]['cores_wanted'] if loads else None,
                     'cores_used': _median([x['cores_used'] for x in loads]),
                     'processes': loads[0]['processes'] if loads else None}}


# -- the LLM engine alone under the same load: python -m wallie_cli.busy ---------------------
_MESSAGES = [{'role': 'system', 'content': 'You are Wallie, a helpful voice assistant. '
              'Answer in one short spoken sentence.'},
             {'role': 'user', 'content': 'What is the capital of France and why is it famous?'}]


def engine_table(model: str, repeats: int, cores: float,
                 echo: Any = print) -> dict[tuple[int, int, int], list[tuple[float, float]]]:
    """llama.cpp first token (ms) and tokens/s, quiet and with `cores` of robot load, for
    2 and 1 threads at nice 0 and 10 (set on this process; needs root to go back to 0).
    Conditions are interleaved repeat by repeat."""
    from llama_cpp import Llama

    from wallie_common import model_store
    llm = Llama(model_path=str(model_store.resolve_file(model)), n_ctx=1024, n_threads=2,
                n_threads_batch=2, n_batch=256, verbose=False)

    def once(threads: int) -> tuple[float, float]:
        llm._ctx.set_n_threads(threads, threads)
        llm.reset()
        t0 = time.perf_counter()
        first, n = None, 0
        for chunk in llm.create_chat_completion(_MESSAGES, max_tokens=40, temperature=0.0,
                                                stream=True):
            if chunk['choices'][0]['delta'].get('content'):
                n += 1
                first = first or time.perf_counter()
        if first is None:
            return float('nan'), 0.0
        return (first - t0) * 1000, (n - 1) / (time.perf_counter() - first) if n > 1 else 0.0
    once(2)                                            # warm-up
    base = os.getpriority(os.PRIO_PROCESS, 0)
    out: dict[tuple[int, int, int], list[tuple[float, float]]] = {}
    try:
        for _ in range(repeats):
            for busy in (0, 1):
                for threads in (2, 1):
                    for nice in (0, 10):
                        os.setpriority(os.PRIO_PROCESS, 0, nice)
                        load = RobotLoad(cores) if busy else None
                        if load:
                            load.start()
                            time.sleep(0.5)
                        try:
                            out.setdefault((busy, threads, nice), []).append(once(threads))
                        finally:
                            if load:
                                load.stop()
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, base)
    for (busy, threads, nice), v in out.items():
        echo(f'{"busy " if busy else "quiet"} threads {threads} nice {nice:>2}: first token '
             f'{_median([x[0] for x in v]):6.0f} ms, {_median([x[1] for x in v]):5.1f} tok/s')
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m wallie_cli.busy`: print `engine_table` for the chosen model and
    load."""
    import argparse
    p = argparse.ArgumentParser(prog='python -m wallie_cli.busy', description=engine_table.__doc__)
    p.add_argument('--model', default='qwen2.5-0.5b-instruct')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--cores', type=float, default=1.0)
    args = p.parse_args(argv)
    print(f'load average {os.getloadavg()}, {os.cpu_count()} CPUs')
    engine_table(args.model, args.repeats, args.cores)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
