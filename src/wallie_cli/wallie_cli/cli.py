"""The `wallie` command line: one verb module per sub-command in wallie_cli.commands.

Each module in wallie/commands/ exposes ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed args; returns the exit code). Logic lives in library
modules; verbs only parse and print.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from wallie_cli import commands


def build_parser() -> argparse.ArgumentParser:
    """The `wallie` parser, with the sub-command of every module in wallie_cli.commands that has
    `register`."""
    parser = argparse.ArgumentParser(
        prog='wallie', description='Wallie: offline, privacy-first voice assistant on ROS 2.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f'{commands.__name__}.{info.name}')
        register = getattr(module, 'register', None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `wallie`: run the chosen sub-command and return its exit code (2 without
    one, 130 on Ctrl-C)."""
    from wallie_common.runtime import apply_privacy_env
    apply_privacy_env()
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, 'func', None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
