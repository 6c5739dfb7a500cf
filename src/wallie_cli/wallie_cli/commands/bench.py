"""`wallie bench`: replay the fixture set through the live graph; latency vs a naive pipeline."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `wallie bench` sub-command to `subparsers` (`--wake`: the wake word benchmark)."""
    from wallie_cli import bench
    p = subparsers.add_parser(
        'bench', help='end-to-end latency of the live graph on the fixtures (+ naive pipeline)',
        description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.build_parser(p)
    p.add_argument('--wake', action='store_true',
                   help='run the wake word benchmark instead (held-out voices, 1 m / 3 m '
                        'rooms, 5-20 dB SNR, an hour of negatives; `wallie wake bench -h` '
                        'for all its options)')
    p.add_argument('--wake-minutes', type=float, default=60.0, metavar='MIN',
                   help='with --wake: minutes of negative audio (default 60)')
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.wake:
        from pathlib import Path

        from wallie_audio import wake_bench
        return wake_bench.main(['--minutes', str(args.wake_minutes),
                                '--out', str(Path(args.out) / 'wake_bench.json')])
    from wallie_cli import bench
    return bench.run(args)
