"""`wallie ready`: wait until the manager reports the assistant ready (for scripts, launch)."""

from __future__ import annotations

import sys
import threading


def register(subparsers) -> None:
    """Add the `wallie ready` sub-command to `subparsers`."""
    p = subparsers.add_parser('ready', help='wait until the assistant reports ready',
                              description='Exit 0 as soon as assistant/state says ready, '
                                          '1 after the timeout (printing the last state).')
    p.add_argument('--timeout', type=float, default=120.0, help='seconds (default 120)')
    p.add_argument('--namespace', default='', help='ROS namespace of the Wallie nodes')
    p.set_defaults(func=run)


def wait_ready(timeout: float, namespace: str = '') -> tuple[bool, str]:
    """Block until assistant/state has ready=true; return (ready, last detail)."""
    from wallie_cli.bags import RosSession
    from wallie_common.qos import STATE_QOS
    from wallie_interfaces.msg import AssistantState

    seen = threading.Event()
    last = {'detail': 'no assistant/state received (is the manager running?)'}

    def on_state(msg: AssistantState) -> None:
        last['detail'] = msg.detail or ('ready' if msg.ready else 'not ready')
        if msg.ready:
            seen.set()
    with RosSession('wallie_ready_probe', namespace=namespace) as session:
        session.node.create_subscription(AssistantState, 'assistant/state', on_state, STATE_QOS)
        session.start_spinning()
        seen.wait(timeout)
    return seen.is_set(), last['detail']


def run(args) -> int:
    """Wait for assistant/state to report ready; return 0 when ready, 1 after the timeout."""
    ok, detail = wait_ready(args.timeout, args.namespace)
    if ok:
        print('ready')
        return 0
    print(f'not ready after {args.timeout:.0f} s: {detail}', file=sys.stderr)
    return 1
