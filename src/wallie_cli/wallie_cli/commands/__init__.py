"""The wallie subcommands, one module each (cli.py dispatches), and what several share."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

PROFILES = ('cpu', 'cpu-accurate', 'gpu')


def add_params_args(p: argparse.ArgumentParser, default_profile: str | None = None,
                    example: str = 'llm:llm.max_tokens=48') -> None:
    """--profile and --set: the parameter profile and single ROS parameter overrides
    (``wallie_bringup.config.parse_sets`` reads the latter)."""
    where = ('config.toml `profile`, else cpu' if default_profile is None
             else default_profile)
    p.add_argument('--profile', choices=PROFILES, default=default_profile,
                   help=f'parameter profile (default: {where})')
    p.add_argument('--set', action='append', default=[], metavar='NODE:PARAM=VALUE',
                   help=f'override one ROS parameter (repeatable), e.g. {example}')


def usage(parser: argparse.ArgumentParser) -> int:
    """A command group called without its sub-command: its help on stderr, exit code 2."""
    parser.print_help(sys.stderr)
    return 2


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGINT or SIGTERM sets while the block runs; the previous handlers are
    back afterwards."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
