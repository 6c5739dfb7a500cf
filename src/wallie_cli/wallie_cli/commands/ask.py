"""`wallie ask QUESTION.wav [--output a.wav]`: one spoken turn headless, JSON on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = """\
Run the real graph for one spoken question (like `wallie demo`) and print one JSON object
on stdout: the transcript, the reply text, whether it was answered, the answer file and
the latency of every stage in milliseconds (null where unknown). Progress goes to stderr
with -v. Exit status: 0 answered, 1 no answer or the graph failed, 2 bad arguments.
"""


def register(subparsers: Any) -> None:
    """Add the `wallie ask` sub-command to `subparsers`."""
    from wallie_cli.commands.demo import add_graph_args
    p = subparsers.add_parser('ask', help='one spoken turn headless; prints JSON',
                              description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('wav', metavar='QUESTION.wav', help='the spoken question (any format '
                   'soundfile reads)')
    p.add_argument('-o', '--output', default=None, metavar='FILE.wav',
                   help='also write the spoken answer here')
    p.add_argument('-v', '--verbose', action='store_true', help='progress on stderr')
    add_graph_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Ask the graph the question in args.wav and print the turn as JSON; return 0 if it was
    answered."""
    from pathlib import Path

    from wallie_bringup import config as wconfig
    from wallie_cli import e2e, wavs
    from wallie_cli.commands.demo import graph_options

    def echo(line: str) -> None:
        if args.verbose:
            print(line, file=sys.stderr, flush=True)

    if not Path(args.wav).is_file():
        print(json.dumps({'ok': False, 'error': f'no such file: {args.wav}'}))
        return 2
    try:
        options = graph_options(args)
    except wconfig.ConfigError as exc:
        print(json.dumps({'ok': False, 'error': str(exc)}))
        return 2
    try:
        outcome = e2e.ask_wav(args.wav, args.output, options, timeout=args.timeout,
                              ready_timeout=args.ready_timeout, echo=echo)
    except wavs.GraphError as exc:
        print(json.dumps({'ok': False, 'error': str(exc)}))
        return 1
    res = outcome.result
    data = {'ok': res.answered, 'question': str(args.wav)}
    data.update(res.to_dict())
    data['answer_wav'] = str(outcome.output) if outcome.output else None
    data['ready_s'] = round(outcome.ready_s, 2)
    data['run_dir'] = str(outcome.run_dir)
    print(json.dumps(data, indent=1))
    return 0 if res.answered else 1
