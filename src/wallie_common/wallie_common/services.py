"""One way to call a ROS service from a worker thread, for every node and tool.

The caller's executor delivers the response (this thread never spins). The client is kept
by the caller: a client created just before a call can lose the response while the server
has not yet matched its reply reader (Fast DDS). No rclpy import here: any rclpy ``Client``
works.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class ServiceCallError(TimeoutError):
    """No response: the service never appeared, did not answer in time, or the call was
    aborted. The message names the service and says which."""


def call(client: Any, request: Any, timeout: float, *, resend_s: float | None = None,
         abort: Callable[[], bool] | None = None) -> Any:
    """Send ``request`` on ``client`` and return the response.

    Waits up to ``timeout`` seconds in all (for the server to appear, then for the
    answer). With ``resend_s`` an idempotent request is sent again when no answer came
    in that long (a request sent to a restarted node's lingering old service is lost).
    ``abort()`` returning True ends the wait early. Raises ServiceCallError.
    """
    name = getattr(client, 'srv_name', '?')
    deadline = time.monotonic() + timeout
    while not client.service_is_ready():
        if time.monotonic() >= deadline:
            raise ServiceCallError(f'service {name} not available after {timeout:g} s')
        if abort is not None and abort():
            raise ServiceCallError(f'call to {name} aborted')
        time.sleep(0.05)
    while True:
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        attempt_end = min(deadline, time.monotonic() + (resend_s or timeout))
        while not done.wait(min(0.1, max(0.0, attempt_end - time.monotonic()))):
            if abort is not None and abort():
                client.remove_pending_request(future)
                raise ServiceCallError(f'call to {name} aborted')
            if time.monotonic() >= attempt_end:
                break
        if done.is_set():
            return future.result()
        client.remove_pending_request(future)
        if time.monotonic() >= deadline:
            raise ServiceCallError(f'no answer from {name} within {timeout:g} s')
