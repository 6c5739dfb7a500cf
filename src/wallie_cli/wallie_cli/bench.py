"""`wallie bench`: end-to-end latency of the live graph on the fixture set, vs a naive pipeline.

Live: the real graph (``wallie_cli.e2e.LiveGraph``: every node a process, real models, CPU
profile by default, wake word off, player on its real-time null sink) hears each fixture bag
replayed into audio/in with microphone timing. Per turn:

* end to end = first audible sample (player) - the fixture's TRUE acoustic speech end (the
  sidecar's ``speech_end_s`` mapped onto the re-stamped replay clock), so the endpoint
  silence wait is inside the number; also reported from the gate's endpoint decision and
  from the gate's own (VAD) speech end;
* the stages between: endpoint wait, ASR final after the endpoint, LLM first speakable
  chunk (and first token), TTS first audio, player.

Naive: the same fixtures, models and parameters in this process, strictly one stage after
the other (``wallie_cli.bench_naive``).

Output: a rich table (median / p95 / max per stage and end to end, the naive/streaming
ratio), ``bench.json`` (every turn and the summary) and ``bench.png`` (waterfall of the
median stage times + CDF of end-to-end latency). Run it with ``wallie bench`` or
``python -m wallie_cli.bench``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

from wallie_cli import busy, e2e, fixture_set, idle, wavs
from wallie_cli.bench_naive import run_naive
from wallie_cli.bench_report import plot, render, summarize
from wallie_cli.commands import add_params_args
from wallie_cli.turn_result import TurnResult


# ---------------------------------------------------------------------------- live graph
def run_live(fixtures: list[dict[str, Any]], repeats: int, options: e2e.GraphOptions,
             echo: Callable[[str], None], warmup: bool = True,
             turn_timeout: float = 60.0, idle_s: float = 0.0, busy_cores: float = 0.0,
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Replay every fixture `repeats` times through the live graph; one dict per turn.

    With `idle_s` > 0 the graph's idle CPU is measured first (after the warm-up): silence
    streams into audio/in for that long and nobody speaks (``wallie_cli.idle``).
    With `busy_cores` > 0 every repeat is played twice: on the quiet machine, then with a
    simulated robot stack using that many cores (``wallie_cli.busy``); each row has its
    ``condition`` (quiet / busy)."""
    turns: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    graph = e2e.LiveGraph(options, echo=lambda line: echo(f'  {line}'))
    try:
        graph.start()
        info['ready_s'] = graph.wait_ready(300)
        info['run_dir'] = str(graph.run_dir)
        info['params'] = graph.prep.resolved.params
        obs = graph.observer
        assert obs is not None
        if warmup and fixtures:
            echo('  warm-up turn (not counted)')
            obs.reset_conversation()
            graph.ask_bag(fixtures[0]['bag_path'], timeout=turn_timeout)
            time.sleep(0.5)
        if idle_s > 0:
            echo(f'  idle graph: {idle_s:.0f} s of silence, CPU time of every node')
            graph.wait_idle(timeout=30.0)
            info['idle'] = idle.idle_summary(idle.measure_idle(graph, idle_s))
            echo('  idle graph: ' + ', '.join(
                f'{k} {v:.1f}' for k, v in info['idle']['percent_of_one_core'].items())
                + f'; all nodes {info["idle"]["total_percent"]:.1f} % of one core')
        conditions = ('quiet', 'busy') if busy_cores > 0 else ('quiet',)
        total = repeats * len(fixtures) * len(conditions)
        k = 0
        for rep, condition in itertools.product(range(repeats), conditions):
            load = busy.RobotLoad(busy_cores) if condition == 'busy' else None
            if load is not None:
                load.start()
                echo(f'  busy robot: {load.processes} processes at normal priority wanting '
                     f'{busy_cores:g} cores')
            try:
                for f in fixtures:
                    k += 1
                    if fixture_set.starts_conversation(f):
                        obs.reset_conversation()
                    res = graph.ask_bag(f['bag_path'], timeout=turn_timeout)
                    row = dict(live_row(f, rep, res), condition=condition)
                    turns.append(row)
                    tag = f'{condition} ' if busy_cores > 0 else ''
                    echo(f'  [{k:>3}/{total}] {tag}{progress_line(row)}')
                    time.sleep(0.5)    # let the echo tail / follow-up bookkeeping settle
            finally:
                if load is not None:
                    info.setdefault('busy_load', []).append(load.stop())
    finally:
        codes = graph.stop()
        info['exit_codes'] = codes
    return turns, info


def live_row(f: dict[str, Any], rep: int, res: TurnResult) -> dict[str, Any]:
    """The JSON row of one live turn: transcript, reply, fact check, latencies, timeline and
    stamps."""
    lat = res.latencies()
    return {
        'fixture': f['name'], 'repeat': rep, 'turn_id': res.turn_id,
        'answered': res.answered, 'transcript': res.transcript, 'reply': res.reply_text,
        'expected': f.get('expected_fact', []),
        'correct': fixture_set.contains_fact(res.reply_text, f.get('expected_fact', [])),
        # other turns the input opened that were transcribed or answered (a split question,
        # noise taken for speech)
        'split_turns': sum(1 for t in res.other_turns if t.transcript.strip() or t.chunks),
        'latency_ms': {k: (v if math.isfinite(v) else None) for k, v in lat.items()},
        # every stage stamp of the turn, ms after the true speech end (for timelines)
        'timeline_ms': res.timeline_ms(),
        'partials': [t['text'] for t in (res.record.transcripts if res.record else [])
                     if not t['is_final'] and not t['is_early_final']],
        'stamps_ns': res.stamps(),
    }


def progress_line(row: dict[str, Any]) -> str:
    """One line of progress for a live turn: end-to-end and stage latencies, fact check and the
    start of the reply."""
    lat = row['latency_ms']

    def ms(key: str) -> str:
        v = lat.get(key)
        return '-' if v is None else f'{v:.0f}'
    if not row['answered']:
        return f'{row["fixture"]:<40} NOT ANSWERED (heard {row["transcript"]!r})'
    mark = 'ok ' if row['correct'] else 'WRONG'
    return (f'{row["fixture"]:<40} e2e {ms("true_e2e_ms"):>5} ms  (endpoint '
            f'{ms("true_endpoint_ms")}, asr {ms("asr_ms")}, llm {ms("llm_first_chunk_ms")}, '
            f'tts {ms("tts_first_audio_ms")}, play {ms("playout_ms")})  {mark} '
            f'{row["reply"][:60]!r}')


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# ---------------------------------------------------------------------------- main
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The `wallie bench` arguments, added to `parser` if given (else a new parser)."""
    p = parser or argparse.ArgumentParser(prog='wallie bench', description=__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--fixtures', metavar='DIR', default=None,
                   help='fixture directory with manifest.json (default: the committed set '
                        'installed with wallie_cli)')
    p.add_argument('--repeats', type=int, default=3, metavar='N',
                   help='passes over the fixture set (default 3)')
    p.add_argument('--out', metavar='DIR', default='bench-out',
                   help='where bench.json and bench.png go (default ./bench-out)')
    p.add_argument('--sets', default=','.join(fixture_set.DEFAULT_SETS), metavar='A,B',
                   help=f'fixture sets to replay (default {",".join(fixture_set.DEFAULT_SETS)})')
    p.add_argument('--only', default='', metavar='NAME,...', help='only these fixtures')
    add_params_args(p, default_profile='cpu')
    p.add_argument('--user-config', action='store_true',
                   help='also apply config.toml and WALLIE_* (default: profile defaults only)')
    p.add_argument('--no-naive', action='store_true', help='skip the naive pipeline')
    p.add_argument('--no-warmup', action='store_true',
                   help='count the first turn too (default: one unmeasured warm-up turn)')
    p.add_argument('--turn-timeout', type=float, default=60.0, metavar='S')
    p.add_argument('--busy-cores', type=float, default=0.0, metavar='N',
                   help='also play every repeat with a simulated robot stack (3 processes at '
                        'normal priority) using about N cores, e.g. 1 (0 = off)')
    p.add_argument('--idle-s', type=float, default=20.0, metavar='S',
                   help='measure the idle graph (silence in, no turns) for this long '
                        'before the turns (0 = skip)')
    return p


def run(args: argparse.Namespace) -> int:
    """Run the bench, print the table and write bench.json and bench.png; return 1 if the graph
    failed or answered no turn, 2 for bad arguments."""
    from rich.console import Console

    from wallie_bringup import config as wconfig
    console = Console()
    fixtures_dir = Path(args.fixtures) if args.fixtures else fixture_set.default_fixtures_dir()
    if not (fixtures_dir / 'manifest.json').is_file():
        console.print('[red]wallie bench: no fixtures (pass --fixtures DIR with a '
                      'manifest.json; python -m wallie_cli.fixtures.generate makes '
                      'them)[/red]')
        return 2
    if args.busy_cores < 0:
        console.print('[red]wallie bench: --busy-cores must be >= 0[/red]')
        return 2
    if args.repeats < 1:
        console.print('[red]wallie bench: --repeats must be >= 1[/red]')
        return 2
    only = [n.strip() for n in args.only.split(',') if n.strip()]
    sets = [s.strip() for s in args.sets.split(',') if s.strip()]
    try:
        fixtures = fixture_set.select_fixtures(fixtures_dir, sets, only)
        params = wconfig.parse_sets(args.set)
    except (wavs.GraphError, wconfig.ConfigError) as exc:
        console.print(f'[red]wallie bench: {exc}[/red]')
        return 2
    if not fixtures:
        console.print(f'[red]wallie bench: no fixtures selected from {fixtures_dir}[/red]')
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    home = fixture_set.temp_home()
    options = e2e.GraphOptions(profile=args.profile, capture='skip', sink='null',
                               wake_engine='none', user_config=args.user_config,
                               params=params, run_dir=str(out / 'run'),
                               home=None if args.user_config else str(home))
    meta: dict[str, Any] = {
        'command': 'wallie bench ' + ' '.join(sys.argv[2:] if sys.argv[1:2] == ['bench']
                                              else sys.argv[1:]),
        'date': time.strftime('%Y-%m-%d %H:%M:%S %z'), 'host': platform.node(),
        'cpus': os.cpu_count(), 'python': platform.python_version(),
        'fixtures_dir': str(fixtures_dir), 'fixtures': [f['name'] for f in fixtures],
        'repeats': args.repeats, 'profile': args.profile, 'overrides': params,
        'load_avg_start': _load()}
    console.print(f'[bold]wallie bench[/bold]: {len(fixtures)} fixtures x {args.repeats} '
                  f'repeats, profile {args.profile}; load average {meta["load_avg_start"]}')
    console.print('Live graph (every node a process; real models):')
    t0 = time.monotonic()
    try:
        live, info = run_live(fixtures, args.repeats, options, console.print,
                              warmup=not args.no_warmup, turn_timeout=args.turn_timeout,
                              idle_s=args.idle_s, busy_cores=args.busy_cores)
    except wavs.GraphError as exc:
        console.print(f'[red]wallie bench: {exc}[/red]')
        return 1
    finally:
        fixture_set.remove_tree(home)
    meta['live_wall_s'] = round(time.monotonic() - t0, 1)
    meta['ready_s'] = round(info.get('ready_s', 0.0), 1)
    meta['load_avg_after_live'] = _load()
    naive = None
    if not args.no_naive:
        console.print('Naive sequential pipeline (same fixtures, models and parameters, '
                      'in process):')
        t0 = time.monotonic()
        naive = run_naive(fixtures, args.repeats, info['params'], console.print,
                          warmup=not args.no_warmup)
        meta['naive_wall_s'] = round(time.monotonic() - t0, 1)
    meta['load_avg_end'] = _load()
    summary = summarize(live, naive, info.get('idle'), info.get('busy_load'))
    render(summary, console)
    data = {'meta': meta, 'summary': summary, 'live_turns': live, 'naive_turns': naive or [],
            'params': info.get('params', {})}
    (out / 'bench.json').write_text(json.dumps(data, indent=1, default=str))
    png = plot(summary, live, naive, out / 'bench.png')
    console.print(f'wrote {out / "bench.json"} and {png}')
    return 0 if summary['live_answered'] else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m wallie_cli.bench`."""
    from wallie_common.runtime import apply_privacy_env
    apply_privacy_env()
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
