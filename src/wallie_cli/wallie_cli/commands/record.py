"""`wallie record`: record live topics into a rosbag2 (mcap) bag, no ROS distro needed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from wallie_cli.commands import stop_on_signals

DEFAULT_TOPICS = ['audio/in']


def register(subparsers: Any) -> None:
    """Add the `wallie record` sub-command to `subparsers`."""
    parser = subparsers.add_parser(
        'record', help='record topics into a rosbag2 bag (mcap, readable by ros2 bag)',
        description='Record live topics (any message type, raw) into a rosbag2 bag that '
                    '`ros2 bag play` and `wallie replay` read. Stops after --duration or on '
                    'Ctrl-C; the bag is always closed cleanly.')
    parser.add_argument('-o', '--output', metavar='OUT', default=None,
                        help='bag directory to create (default: wallie_bag_<date>-<time>)')
    which = parser.add_mutually_exclusive_group()
    which.add_argument('--topics', nargs='+', metavar='TOPIC', default=None,
                       help=f'topics to record (default: {" ".join(DEFAULT_TOPICS)})')
    which.add_argument('-a', '--all', action='store_true',
                       help='record every topic except /rosout, /parameter_events and '
                            'hidden ones; topics that appear later are recorded too')
    parser.add_argument('--duration', type=float, metavar='S', default=None,
                        help='stop after S seconds (default: until Ctrl-C)')
    parser.add_argument('--storage', choices=['mcap', 'sqlite3'], default='mcap',
                        help='storage format (default: mcap, the Jazzy default)')
    parser.add_argument('--json', action='store_true', help='print the summary as JSON')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Record until --duration or a stop signal and print the summary; return 1 on a bag error,
    2 for a bad --duration."""
    from wallie_cli import bag_files, bags
    if args.duration is not None and args.duration <= 0:
        print('wallie record: error: --duration must be > 0', file=sys.stderr)
        return 2
    out = args.output or time.strftime('wallie_bag_%Y%m%d-%H%M%S')
    topics = None if args.all else (args.topics or DEFAULT_TOPICS)
    with stop_on_signals() as stop:
        try:
            recorder = bags.Recorder(out, topics, storage=args.storage).start()
            what = 'all topics' if topics is None else ' '.join(topics)
            until = f'for {args.duration:g} s' if args.duration else 'until Ctrl-C'
            print(f'recording {what} into {out} {until}', file=sys.stderr, flush=True)
            try:
                stop.wait(args.duration)
            finally:
                stats = recorder.stop()
        except bag_files.BagError as exc:
            print(f'wallie record: error: {exc}', file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({'path': str(stats.path), 'duration_s': round(stats.duration_s, 3),
                          'messages': stats.messages, 'topics': stats.per_topic,
                          'types': stats.types, 'skipped': stats.skipped_topics}))
    else:
        print(f'{stats.path}: {stats.messages} messages in {stats.duration_s:.1f} s')
        for name, count in sorted(stats.per_topic.items()):
            print(f'  {name:40s} {stats.types[name]:45s} {count}')
        for name, why in sorted(stats.skipped_topics.items()):
            print(f'  skipped {name}: {why}')
    if not stats.messages:
        print('wallie record: warning: nothing was recorded (is anything publishing?)',
              file=sys.stderr)
    return 0
