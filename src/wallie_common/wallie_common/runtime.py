"""The shutdown-safe main loop shared by every Wallie node executable.

rclpy's default signal handling races with node destruction on the PyPI wheels (nodes hung
at 100 % CPU in destroy_node and ignored SIGTERM). Here SIGINT/SIGTERM only set a flag; the
loop notices it, then tears down in a fixed order.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import rclpy
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

OFFLINE_ENV = {
    # Model libraries must never reach a hub or send telemetry (privacy by default).
    'HF_HUB_OFFLINE': '1',
    'TRANSFORMERS_OFFLINE': '1',
    'HF_DATASETS_OFFLINE': '1',
    'HF_HUB_DISABLE_TELEMETRY': '1',
    'DO_NOT_TRACK': '1',
    'VLLM_NO_USAGE_STATS': '1',
    'COQUI_TOS_AGREED': '1',
    'ORT_DISABLE_TELEMETRY': '1',   # onnxruntime >= 1.2x looks up a telemetry host on Linux
}
ROS_PRIVACY_ENV = {
    'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
}


def apply_privacy_env(environ: dict | None = None) -> None:
    """Force offline model libraries and localhost-only discovery unless the user chose."""
    env = os.environ if environ is None else environ
    for key, value in OFFLINE_ENV.items():
        env[key] = value
    for key, value in ROS_PRIVACY_ENV.items():
        env.setdefault(key, value)


def lower_cpu_priority(nice: int) -> int:
    """Raise this process's nice value to at least `nice` (every thread, Linux), so the
    latency-critical stages win the CPU from a bulk one. Never raises it back (that needs
    CAP_SYS_NICE). Returns the nice value now in effect (0 if unknown)."""
    if nice <= 0:
        return 0
    try:
        tids = [int(t) for t in os.listdir('/proc/self/task')]
    except OSError:
        tids = [0]
    now = 0
    for tid in tids:
        try:
            cur = os.getpriority(os.PRIO_PROCESS, tid)
            if cur < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
            now = max(now, os.getpriority(os.PRIO_PROCESS, tid))
        except OSError:          # thread gone, or not permitted
            continue
    return now


def run_node(factory: Callable[[], Any], args: list[str] | None = None, threads: int = 4,
             *, on_spinning: Callable[[Any], None] | None = None,
             before_stop: Callable[[Any], None] | None = None,
             on_hangup: Callable[[Any], None] | None = None,
             exit_on_spin_error: bool = True) -> int:
    """Create the node, spin it until SIGINT/SIGTERM, then shut down cleanly.

    The executor spins on its own thread and blocks until there is work (no polling: an
    idle node uses no CPU between its events); the main thread only waits for the stop
    flag, which a signal sets (a lock wait in the main thread is interrupted by signals,
    a wait inside rcl is not).

    A node with an `autostart` parameter set configures and activates itself first. Hooks,
    each given the node: `on_spinning` runs once the executor spins, `before_stop` when a
    stop was asked for, while the executor still spins (e.g. to shut other nodes down over
    services), and `on_hangup` on its own thread at each SIGHUP (without it, SIGHUP keeps
    its default action). A callback that raises ends the node with status 1 (a stage is
    restarted by its supervisor), unless `exit_on_spin_error` is False: then it is logged
    and the node goes on.

    Exit status 0 for a requested stop, however many signals arrive: a Ctrl-C in a terminal
    reaches every process of the group and `ros2 launch` forwards its own SIGINT on top, so
    two signals a few ms apart are the normal case. The first one stops the loop; later ones
    only note the request. Teardown is bounded by SHUTDOWN_WATCHDOG_S, which is shorter than
    launch's SIGINT -> SIGTERM escalation (5 s), so launch never has to escalate.
    """
    apply_privacy_env()
    stop = threading.Event()            # asked to stop (signal, or the spinner failed)
    hangup = threading.Event()
    wakeup = threading.Event()          # the main thread looks at the flags at once
    spin_stop = threading.Event()       # the executor stops only after before_stop
    failure: list[Exception] = []

    def _on_signal(flag: threading.Event) -> Callable[..., None]:
        def handler(_signum: int, _frame: Any) -> None:
            flag.set()
            wakeup.set()
        return handler

    # Before rclpy.init: from here on a signal can never raise KeyboardInterrupt.
    signal.signal(signal.SIGINT, _on_signal(stop))
    signal.signal(signal.SIGTERM, _on_signal(stop))
    if on_hangup is not None:
        signal.signal(signal.SIGHUP, _on_signal(hangup))
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = factory()
    executor = MultiThreadedExecutor(num_threads=threads)
    executor.add_node(node)

    def _spin_failed(exc: Exception) -> None:
        if not exit_on_spin_error:
            node.get_logger().error(f'callback failed: {exc!r}')
            return
        failure.append(exc)
        spin_stop.set()
        stop.set()
        wakeup.set()

    spinner = threading.Thread(
        target=spin_until_stopped, args=(executor, node.context, spin_stop, _spin_failed),
        kwargs={'timeout_sec': None}, name='executor-spin', daemon=True)
    code = 0
    try:
        if _autostart(node):
            _bring_up(node)
        spinner.start()
        if on_spinning is not None:
            on_spinning(node)
        while not stop.is_set() and rclpy.ok():
            wakeup.wait(MAIN_WAIT_S)
            wakeup.clear()
            if hangup.is_set() and on_hangup is not None:
                hangup.clear()
                threading.Thread(target=on_hangup, args=(node,), name='hangup',
                                 daemon=True).start()
        if failure:
            raise failure[0]
    except Exception as exc:  # log, then fall through to the orderly teardown
        node.get_logger().fatal(f'unhandled exception: {exc!r}')
        code = 1
    finally:
        watchdog = shutdown_watchdog(node, code)
        try:
            if before_stop is not None and not failure:
                before_stop(node)
        finally:
            spin_stop.set()
            # Ends the spinner's blocking wait (a plain wake() does not: the executor
            # waits again when it finds no work).
            executor.shutdown(timeout_sec=0)
            if spinner.is_alive():
                spinner.join(2.0)
            _shutdown_lifecycle(node)
            teardown(node, executor)
            watchdog.cancel()
            ignore_stop_signals()
    return code


# The main thread's wait; signals end it at once, this only bounds how late a context shut
# down from elsewhere is noticed.
MAIN_WAIT_S = 1.0


def teardown(node, executor, wait_s: float = 1.0) -> None:
    """Stop `executor`, let the callbacks still running on its threads finish (at most
    `wait_s`), destroy `node` and shut rclpy down, leaving no unread callback exception.

    rclpy 7's Executor.shutdown does not wait for running callbacks, so one still running
    when its node is destroyed fails with "cannot use Destroyable because destruction was
    requested"; unread, that exception is printed at exit as "The following exception was
    never retrieved". At shutdown such a failure is expected: it is read and dropped."""
    executor.shutdown(timeout_sec=0)
    running = list(getattr(executor, '_futures', ()))   # MultiThreadedExecutor's tasks
    _settle(running, wait_s)
    node.destroy_node()
    rclpy.try_shutdown()
    _settle(running, 0.5)


def _settle(tasks: list, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while any(not t.done() for t in tasks) and time.monotonic() < deadline:
        time.sleep(0.01)
    for t in tasks:
        if t.done():
            t.exception()       # marks it read


# launch_ros escalates SIGINT -> SIGTERM after 5 s (sigterm_timeout) and -> SIGKILL 5 s later;
# a node must be gone before the first escalation.
SHUTDOWN_WATCHDOG_S = 4.0


def shutdown_watchdog(node, code: int) -> threading.Timer:
    """Start the bound on a teardown (cancel it when done). A callback that never returns (a
    stuck goal, a blocked engine) must not keep the process alive: supervisors escalate to
    SIGKILL, which leaves DDS shared memory behind."""
    watchdog = threading.Timer(SHUTDOWN_WATCHDOG_S, _force_exit, args=(node, code))
    watchdog.daemon = True
    watchdog.start()
    return watchdog


def ignore_stop_signals() -> None:
    """Ignore SIGINT/SIGTERM from now on (the process is exiting anyway).

    At interpreter finalization Python puts SIG_DFL back for every signal that has a Python
    handler, so a second Ctrl-C arriving then would kill the process with -2 (launch:
    "process has died [exit code -2]"); an ignored signal stays ignored."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass


def _force_exit(node, code: int) -> None:
    try:
        node.get_logger().warning(f'shutdown took longer than {SHUTDOWN_WATCHDOG_S:.0f} s; '
                                  'exiting without waiting for busy callbacks')
    finally:
        os._exit(code)


def _autostart(node) -> bool:
    if not isinstance(node, LifecycleNode):
        return False            # (the manager's own `autostart` means its stages)
    try:
        return bool(node.get_parameter('autostart').value)
    except Exception:
        return False


def _bring_up(node) -> None:
    log = node.get_logger()
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        log.error('autostart: configure failed; staying unconfigured (retry via lifecycle)')
        return
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        log.error('autostart: activate failed')


def _shutdown_lifecycle(node) -> None:
    """Run the node's own shutdown transition so engines release their resources."""
    trigger = getattr(node, 'trigger_shutdown', None)
    if trigger is None:
        return
    try:
        trigger()
    except Exception:  # already finalized, or invalid from the current state
        pass


def main_for(factory: Callable[[], Any], **hooks: Any) -> Callable[[list[str] | None], None]:
    """Build the console-script `main` of a node executable: `run_node(factory, args,
    **hooks)`, exiting with its status."""
    def main(args: list[str] | None = None) -> None:
        sys.exit(run_node(factory, args, **hooks))
    return main


def spin_until_stopped(executor, context, stop: threading.Event,
                       on_error: Callable[[Exception], None] | None = None,
                       timeout_sec: float | None = 0.05) -> None:
    """Spin `executor` until `stop` is set or `context` shuts down (a spin error while
    shutting down ends the loop; other errors go to `on_error`, if given, and the loop
    goes on).

    `timeout_sec` bounds each wait. With None the executor sleeps until an event arrives,
    so an idle spin costs no CPU; then whoever sets `stop` must also call
    ``executor.shutdown()`` (``wake()`` is not enough: finding no work, the executor
    waits again).
    """
    while not stop.is_set():
        try:
            executor.spin_once(timeout_sec=timeout_sec)
        except Exception as exc:
            if stop.is_set() or not context.ok():
                return
            if on_error is not None:
                on_error(exc)


class Intake:
    """High-rate subscriptions (audio frames) on a small private node with its own
    single-threaded executor and thread.

    rclpy's MultiThreadedExecutor takes at most one message per subscription per wait and
    then hands it to a pool thread. While that handler is pending, a subscription with more
    data waiting makes every wait return at once, so the spin thread busy-loops, holding
    the GIL the handler needs. At 50-80 frames/s on a loaded 2-core machine the reader
    queue then fills and frames are dropped (measured on the voice gate: reference frames
    ~0.9 s late, hundreds lost, 100 % CPU). Here the callbacks run inline on one thread
    whose wait set holds only these subscriptions.

    Topic names are resolved by the owning node (its namespace and remaps apply); the
    private node ignores the process's global arguments so a ``__node:=`` remap does not
    give it the owner's name, and its name starts with an underscore (``_voice_gate_intake``)
    so ROS tools treat it as hidden: it is part of its owner, not a node of the graph.
    Callbacks must be short (decode and enqueue).
    """

    def __init__(self, owner, suffix: str = 'intake') -> None:
        self._owner = owner
        self._context = owner.context
        self.node = rclpy.create_node(f'_{owner.get_name()}_{suffix}',
                                      namespace=owner.get_namespace(), context=self._context,
                                      use_global_arguments=False, enable_rosout=False,
                                      start_parameter_services=False)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f'{suffix}-spin', daemon=True)
        self._thread.start()

    def subscribe(self, msg_type, topic: str, callback, qos):
        return self.node.create_subscription(
            msg_type, self._owner.resolve_topic_name(topic), callback, qos)

    def _spin(self) -> None:
        spin_until_stopped(self._executor, self._context, self._stop,
                           lambda exc: self._owner.get_logger().error(f'intake: {exc!r}'),
                           timeout_sec=None)

    def close(self) -> None:
        self._stop.set()
        try:
            self._executor.shutdown(timeout_sec=1.0)     # ends the blocking wait
        except Exception:
            pass
        self._thread.join(2.0)
        try:
            self.node.destroy_node()
        except Exception:
            pass

