"""`wallie ready`: wait until the manager reports the assistant ready (for scripts, launch)."""

from __future__ import annotations

import sys
import threading
import time


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
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from wallie_common.qos import STATE_QOS
    from wallie_interfaces.msg import AssistantState

    ctx = rclpy.Context()
    rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('wallie_ready_probe', namespace=namespace.strip('/') or None,
                             context=ctx)
    seen = threading.Event()
    last = {'detail': 'no assistant/state received (is the manager running?)'}

    def on_state(msg: AssistantState) -> None:
        last['detail'] = msg.detail or ('ready' if msg.ready else 'not ready')
        if msg.ready:
            seen.set()
    node.create_subscription(AssistantState, 'assistant/state', on_state, STATE_QOS)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    deadline = time.monotonic() + timeout
    try:
        while not seen.is_set() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    return seen.is_set(), last['detail']


def run(args) -> int:
    """Wait for assistant/state to report ready; return 0 when ready, 1 after the timeout."""
    ok, detail = wait_ready(args.timeout, args.namespace)
    if ok:
        print('ready')
        return 0
    print(f'not ready after {args.timeout:.0f} s: {detail}', file=sys.stderr)
    return 1
