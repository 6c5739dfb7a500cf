"""`wallie bench`: replay the fixture set through the live graph; latency vs a naive pipeline."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from wallie_cli import bench
    p = subparsers.add_parser(
        'bench', help='end-to-end latency of the live graph on the fixtures (+ naive pipeline)',
        description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.build_parser(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from wallie_cli import bench
    return bench.run(args)
