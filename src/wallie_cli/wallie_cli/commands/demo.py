"""`wallie demo [WAV] [--output answer.wav]`: one spoken question through the real graph."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from wallie_cli.commands import add_params_args

HELP = """\
Bring up the real Wallie graph headless (voice gate, ASR, LLM, TTS, player, manager and
metrics as separate processes; the capture node plays the question instead of a
microphone, the player writes to a file instead of a speaker), ask it one spoken question,
and print what it heard, what it answered and how long every stage took. The spoken answer
is written to --output (default answer.wav).

WAV: any file soundfile reads (WAV, FLAC, OGG; any rate, mono or stereo); it is converted
to 16 kHz mono and padded with silence. Default: the committed question
src/wallie_cli/wallie_cli/data/question.wav ("What is the capital of France?").

With a microphone and speakers, `wallie up` is the live assistant.
"""

DEFAULT_QUESTION = Path(__file__).resolve().parent.parent / 'data' / 'question.wav'


def add_graph_args(p: argparse.ArgumentParser) -> None:
    """Options shared by `wallie demo` and `wallie ask`."""
    add_params_args(p)
    p.add_argument('--defaults', action='store_true',
                   help='ignore ~/.wallie_voice_bot/config.toml and WALLIE_* variables')
    p.add_argument('--timeout', type=float, default=90.0, metavar='S',
                   help='seconds to wait for the answer once the question was played '
                        '(default 90)')
    p.add_argument('--ready-timeout', type=float, default=300.0, metavar='S',
                   help='seconds to wait for the models to load (default 300)')
    p.add_argument('--run-dir', metavar='DIR', help='run directory (logs, parameters); '
                   'default ~/.wallie_voice_bot/run/<time>-<pid>')


def register(subparsers: Any) -> None:
    """Add the `wallie demo` sub-command to `subparsers`."""
    p = subparsers.add_parser('demo', help='ask the real graph one spoken question (headless)',
                              description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('wav', nargs='?', metavar='WAV', help='the spoken question (default: the '
                   'committed question.wav)')
    p.add_argument('-o', '--output', default='answer.wav', metavar='FILE.wav',
                   help='where to write the spoken answer (default answer.wav)')
    add_graph_args(p)
    p.set_defaults(func=run)


def graph_options(args: argparse.Namespace) -> Any:
    """The GraphOptions the `--profile`, `--set`, `--defaults` and `--run-dir` arguments ask
    for."""
    from wallie_bringup import config as wconfig
    from wallie_cli import e2e
    return e2e.GraphOptions(profile=args.profile, params=wconfig.parse_sets(args.set),
                            user_config=not args.defaults, run_dir=args.run_dir)


def fmt_ms(v: float | None) -> str:
    """Milliseconds for the table: thousands separated, '—' when unknown."""
    return '—' if v is None or not math.isfinite(v) else f'{v:,.0f}'


def latency_rows(lat: dict[str, float], truth: str) -> list[tuple[str, str, str]]:
    """(label, ms, note) rows of one turn's latency, in pipeline order."""
    from wallie_cli.turn_result import SEGMENTS
    rows = []
    for key, label, _a, _b in SEGMENTS:
        rows.append((label, fmt_ms(lat.get(key)), ''))
    rows.append(('LLM first token (after ASR final)', fmt_ms(lat.get('llm_first_token_ms')),
                 'inside the LLM step'))
    rows.append(('LLM whole reply (after ASR final)', fmt_ms(lat.get('llm_total_ms')),
                 'streams while the first chunk is spoken'))
    rows.append(('END TO END from the VAD speech end', fmt_ms(lat.get('e2e_ms')),
                 'speech end -> first audible sample'))
    rows.append(('end to end from the endpoint decision',
                 fmt_ms(lat.get('e2e_from_endpoint_ms')), ''))
    what = 'exact (fixture)' if truth == 'fixture' else 'estimated from the input file'
    rows.append(('end to end from the acoustic speech end', fmt_ms(lat.get('true_e2e_ms')),
                 what))
    return rows


def run(args: argparse.Namespace) -> int:
    """Ask the graph the question and print what was heard and said with the latency table;
    return 0 if a spoken answer came back and was written."""
    from rich.console import Console
    from rich.table import Table

    from wallie_bringup import config as wconfig
    from wallie_cli import e2e, wavs
    out = Console()
    err = Console(stderr=True)
    question = Path(args.wav) if args.wav else DEFAULT_QUESTION
    if not question.is_file():
        err.print(f'[red]wallie demo: no such file: {question}[/red]')
        return 2
    try:
        options = graph_options(args)
    except wconfig.ConfigError as exc:
        err.print(f'[red]wallie demo: {exc}[/red]')
        return 2
    out.print(f'[bold]Wallie demo[/bold]: asking the question in [cyan]{question}[/cyan]')
    out.print('Starting the graph (models load once; the first start takes a while) ...')
    try:
        outcome = e2e.ask_wav(question, args.output, options, timeout=args.timeout,
                              ready_timeout=args.ready_timeout,
                              echo=lambda line: out.print(f'  [dim]{line}[/dim]'))
    except wavs.GraphError as exc:
        err.print(f'[red]wallie demo: {exc}[/red]')
        return 1
    except KeyboardInterrupt:
        err.print('[yellow]interrupted[/yellow]')
        return 130
    res = outcome.result
    out.print(f'Graph ready in {outcome.ready_s:.1f} s; logs in {outcome.run_dir}/logs')
    out.print()
    out.print(f'[bold]You said:[/bold]   {res.transcript or "(nothing recognised)"}')
    out.print(f'[bold]Wallie:[/bold]     {res.reply_text or "(no reply)"}')
    if outcome.output is not None:
        out.print(f'[bold]Answer:[/bold]     {outcome.output} ({res.answer_s:.2f} s of speech)')
    table = Table(title=f'Latency of this turn (turn {res.turn_id or "?"})', title_justify='left')
    table.add_column('stage')
    table.add_column('ms', justify='right')
    table.add_column('note', style='dim')
    lat = res.latencies()
    for label, ms, note in latency_rows(lat, res.feed.truth if res.feed else ''):
        style = 'bold' if label.startswith('END TO END') else None
        table.add_row(label, ms, note, style=style)
    out.print(table)
    if not res.answered:
        err.print('[red]No spoken answer came back.[/red] Node logs: '
                  f'{outcome.run_dir}/logs/')
        return 1
    if outcome.output is None:
        err.print('[red]The player wrote no audio.[/red]')
        return 1
    return 0
