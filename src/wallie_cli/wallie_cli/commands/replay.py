"""`wallie replay BAG`: publish a rosbag2 bag with its recorded timing, no ROS distro needed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wallie_cli.commands import stop_on_signals


def register(subparsers: Any) -> None:
    """Add the `wallie replay` sub-command to `subparsers`."""
    parser = subparsers.add_parser(
        'replay', help='play a rosbag2 bag (mcap or sqlite3) into the live graph',
        description='Publish the messages of a rosbag2 bag (e.g. recorded microphone audio) '
                    'with their recorded timing. AudioFrame header stamps are re-stamped to '
                    'the current time (the live graph measures latency from them) unless '
                    '--keep-stamps is given.')
    parser.add_argument('bag', metavar='BAG', help='bag directory (or its .mcap/.db3 file)')
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument('--rate', type=float, default=1.0, metavar='R',
                       help='playback speed factor (default 1.0 = real time)')
    speed.add_argument('--fast', action='store_true',
                       help='no pacing (best-effort subscribers may drop messages)')
    parser.add_argument('--loop', action='store_true', help='replay until Ctrl-C')
    parser.add_argument('--topics', nargs='+', metavar='TOPIC', default=None,
                        help='replay only these topics (default: all)')
    parser.add_argument('--remap', nargs='+', metavar='FROM:=TO', default=[],
                        help='publish a recorded topic under another name')
    parser.add_argument('--keep-stamps', action='store_true',
                        help='publish header stamps as recorded (like ros2 bag play)')
    parser.add_argument('--reliable', action='store_true',
                        help='publish reliable instead of the recorded QoS')
    parser.add_argument('--wait-subscribers', type=float, default=2.0, metavar='S',
                        help='wait up to S s for subscribers before starting (default 2)')
    parser.add_argument('--json', action='store_true', help='print the summary as JSON')
    parser.set_defaults(func=run)


def _parse_remap(items: list[str]) -> dict[str, str]:
    remap = {}
    for item in items:
        src, sep, dst = item.partition(':=')
        if not sep or not src or not dst:
            raise ValueError(f'--remap {item!r}: expected FROM:=TO')
        remap[src] = dst
    return remap


def run(args: argparse.Namespace) -> int:
    """Replay the bag and print the summary; return 1 on a bag error, 2 for bad arguments."""
    from wallie_cli import bag_files, bags
    try:
        remap = _parse_remap(args.remap)
    except ValueError as exc:
        print(f'wallie replay: error: {exc}', file=sys.stderr)
        return 2
    if not args.fast and not args.rate > 0:
        print('wallie replay: error: --rate must be > 0', file=sys.stderr)
        return 2
    qos = None
    with stop_on_signals() as stop:
        try:
            with bags.RosSession('wallie_replay') as session:
                if args.reliable:
                    from rclpy.qos import QoSProfile, ReliabilityPolicy
                    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
                stats = bags.replay(args.bag, session.node, rate=args.rate, fast=args.fast,
                                    restamp=not args.keep_stamps, loop=args.loop,
                                    topics=args.topics, remap=remap, qos=qos, stop=stop,
                                    wait_for_subscribers=args.wait_subscribers)
        except bag_files.BagError as exc:
            print(f'wallie replay: error: {exc}', file=sys.stderr)
            return 1
    late = stats.lateness_summary()
    if args.json:
        print(json.dumps({'bag': args.bag, 'messages': stats.messages, 'passes': stats.passes,
                          'wall_s': round(stats.wall_s, 3), 'topics': stats.per_topic,
                          'skipped': stats.skipped_topics, 'offset_ns': stats.offset_ns,
                          'lateness_ms': {k: round(v, 3) for k, v in late.items()}}))
    else:
        print(f'{args.bag}: {stats.messages} messages in {stats.wall_s:.2f} s '
              f'({stats.passes} pass{"es" if stats.passes != 1 else ""}); lateness ms '
              f'p50 {late["p50"]:.2f} p95 {late["p95"]:.2f} max {late["max"]:.2f}')
        targets = {('/' + k).replace('//', '/'): ('/' + v).replace('//', '/')
                   for k, v in remap.items()}
        for name, count in sorted(stats.per_topic.items()):
            shown = f'{name} -> {targets[name]}' if name in targets else name
            print(f'  {shown:40s} {count}')
        for name, why in sorted(stats.skipped_topics.items()):
            print(f'  skipped {name}: {why}')
    return 0
