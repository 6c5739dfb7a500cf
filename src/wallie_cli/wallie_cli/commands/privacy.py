"""`wallie privacy check | purge`: show and verify Wallie's privacy settings.

The verb only parses and prints; the logic is in :mod:`wallie_manager.privacy`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from wallie_cli.commands import usage
from wallie_manager import privacy


def register(subparsers: Any) -> None:
    """Add the ``privacy`` command and its sub-commands to the ``wallie`` CLI."""
    parser = subparsers.add_parser(
        'privacy', help='show what Wallie keeps, where, for how long, and what it connects to',
        description='Privacy settings in effect and checks of the files Wallie wrote.')
    parser.set_defaults(func=lambda args: usage(parser))
    sub = parser.add_subparsers(dest='privacy_command', metavar='{check,purge}')

    p_check = sub.add_parser(
        'check', help='print the effective privacy settings; exit 1 on a problem',
        description='Offline switches, ROS discovery range, metrics endpoint, what is written '
                    'where and for how long, and file permissions under the Wallie home.')
    p_check.add_argument('--json', action='store_true', help='machine-readable output')
    _add_home(p_check)
    p_check.set_defaults(func=cmd_check)

    p_purge = sub.add_parser(
        'purge', help='delete archived transcripts now (older than the retention, or all)')
    p_purge.add_argument('--all', action='store_true', help='delete every archive file')
    _add_home(p_purge)
    p_purge.set_defaults(func=cmd_purge)


def _add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--home', metavar='DIR', default=None,
                        help='Wallie home (default: $WALLIE_HOME or ~/.wallie_voice_bot)')


def _onoff(flag: bool) -> str:
    return 'on' if flag else 'off'


def cmd_check(args: argparse.Namespace) -> int:
    """Print the privacy report (or its JSON); return 1 if it found a problem."""
    settings = privacy.load_settings(args.home)
    rep = privacy.report(settings)
    if args.json:
        print(json.dumps(rep, indent=1, default=str))
        return 1 if rep['problems'] else 0
    net, store = rep['network'], rep['storage']
    offline = net['model_libraries_offline']
    print('Wallie privacy check')
    print(f'  settings from: {settings.source}')
    print('network')
    print('  model libraries offline (forced by every Wallie process): '
          + ' '.join(f'{k}={v}' for k, v in offline.items()))
    print(f'  ROS discovery range: {net["ros_discovery_range"]} '
          f'(ROS_AUTOMATIC_DISCOVERY_RANGE; domain {net["ros_domain_id"]})')
    print(f'  ROS static peers: {net["ros_static_peers"] or "none"}')
    print(f'  DDS security (SROS2): {_onoff(net["sros2_enabled"])}'
          + (f', keystore {net["sros2_keystore"]}' if net['sros2_keystore'] else ''))
    print(f'  metrics endpoint: {net["metrics_endpoint"]}')
    print('  nothing else listens or connects outside this machine (models load from disk)')
    print('storage')
    print(f'  home: {store["home"]} (directories 0700, files 0600)')
    log = store['log']
    print(f'  event log: {log["path"]} ({log["content"]}; rotated, at most '
          f'{log["max_bytes"] / 1048576:.0f} MiB)')
    arc = store['archive']
    if arc['enabled']:
        keep = (f'deleted after {arc["retention_h"]:g} h' if arc['retention_h'] > 0
                else 'kept until you delete them')
        print(f'  transcripts and replies: archived to {arc["path"]}, {keep}')
    else:
        print('  transcripts and replies: in RAM for the conversation only (archive off); '
              'logged at debug level only')
    if arc['files']:
        print(f'  archive now: {arc["files"]} file(s), oldest {arc["oldest_h"]:.1f} h; files '
              f'older than {arc["retention_h"]:g} h are deleted at start and every 10 min')
    audio = store['audio']
    print(f'  microphone audio: RAM ring of at most {audio["ram_ring_max_s"] / 60:.0f} min; '
          f'on disk: {audio["on_disk"]}')
    print(f'  ROS logs: {store["ros_logs"]}')
    print(f'  models: {store["models"]} (read at run time; downloaded only by '
          '`wallie models fetch`)')
    for warning in rep['warnings']:
        print(f'WARNING: {warning}')
    for problem in rep['problems']:
        print(f'PROBLEM: {problem}')
    if rep['problems']:
        print(f'{len(rep["problems"])} problem(s)')
        return 1
    print('OK')
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Delete the archive files older than the retention (every one with --all); return 1 on an
    error."""
    settings = privacy.load_settings(args.home)
    directory = privacy.archive_dir(Path(settings.home))
    retention = 1e-9 if args.all else settings.retention_h
    if retention <= 0:
        print(f'archive retention is 0 (keep); nothing deleted from {directory}')
        return 0
    result = privacy.purge_archive(directory, retention)
    print(f'deleted {len(result.deleted)} archive file(s) from {directory}; '
          f'{result.kept} kept')
    for error in result.errors:
        print(f'error: {error}', file=sys.stderr)
    return 1 if result.errors else 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry ``python -m wallie_cli.commands.privacy ...`` (= ``wallie privacy``)."""
    from wallie_cli import cli
    return cli.main(['privacy', *(sys.argv[1:] if argv is None else argv)])


if __name__ == '__main__':
    sys.exit(main())
