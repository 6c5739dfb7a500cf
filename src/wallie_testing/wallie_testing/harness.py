"""Graph test harness: real node processes on an isolated ROS domain.

No pytest here: benches use it too. The pytest fixtures are in ``wallie_testing.fixtures``.
The domain id is chosen per pytest process before rclpy is initialised, so parallel runs
(xdist workers, several checkouts) never see each other.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

_DOMAIN_RANGE = (1, 101)


_DOMAIN_LOCKS: list = []   # held open for the life of the process


def _pick_domain_id() -> int:
    """A domain id no other live test process holds (flock on a per-domain lock file)."""
    import fcntl
    lo, hi = _DOMAIN_RANGE
    worker = os.environ.get('PYTEST_XDIST_WORKER', 'gw0')
    start = (os.getpid() * 31 + sum(map(ord, worker))) % (hi - lo)
    lock_dir = Path(tempfile.gettempdir()) / 'wallie-ros-domains'
    lock_dir.mkdir(exist_ok=True)
    for i in range(hi - lo):
        domain = lo + (start + i) % (hi - lo)
        f = open(lock_dir / f'{domain}.lock', 'w')
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _DOMAIN_LOCKS.append(f)
        return domain
    return lo + start


def configure_ros_env(log_dir: str | None = None) -> dict[str, str]:
    """Set (once per process) the ROS environment of this test run and return it."""
    if os.environ.get('WALLIE_TEST_DOMAIN_SET') != str(os.getpid()):
        os.environ['ROS_DOMAIN_ID'] = str(_pick_domain_id())
        os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        os.environ.pop('ROS_LOCALHOST_ONLY', None)
        os.environ['ROS_LOG_DIR'] = log_dir or tempfile.mkdtemp(prefix='wallie-roslog-')
        os.environ['WALLIE_TEST_DOMAIN_SET'] = str(os.getpid())
        os.environ['HF_HUB_OFFLINE'] = '1'
        os.environ['PYTHONUNBUFFERED'] = '1'
    return {k: os.environ[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE',
                                       'ROS_LOG_DIR')}


def executable(name: str) -> list[str]:
    """Command line that runs a node executable `pkg.module` or console script `name`."""
    if name.endswith('.py'):
        return [sys.executable, name]
    if '.' in name:
        return [sys.executable, '-m', name]
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return [found]
    raise FileNotFoundError(f'node executable {name!r} not found next to {sys.executable}')


def wait_param(node, name: str, value: Any, timeout: float = 10.0) -> Any:
    """Poll an in-process node's parameter until it equals `value`; return what it holds."""
    deadline = time.monotonic() + timeout
    while node.get_parameter(name).value != value and time.monotonic() < deadline:
        time.sleep(0.02)
    return node.get_parameter(name).value


class NodeProcess:
    """A node executable running as a real process, with its log captured."""

    def __init__(self, exe: str, name: str | None = None, params: dict[str, Any] | None = None,
                 args: Iterable[str] = (), env: dict[str, str] | None = None,
                 workdir: Path | None = None) -> None:
        self.exe = exe
        self.name = name or Path(exe).stem.rsplit('.', 1)[-1]
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f'wallie-{self.name}-'))
        self.log_path = self.workdir / f'{self.name}.log'
        cmd = executable(exe) + list(args)
        ros_args: list[str] = []
        if params:
            pfile = self.workdir / f'{self.name}.params.yaml'
            pfile.write_text(yaml.safe_dump({'/**': {'ros__parameters': params}}))
            ros_args += ['--params-file', str(pfile)]
        if name:
            ros_args += ['-r', f'__node:={name}']
        if ros_args:
            cmd += ['--ros-args'] + ros_args
        self.cmd = cmd
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=full_env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, wait, then SIGKILL; return the exit code (negative = killed by signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (simulate a crash)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Probe:
    """An rclpy node inside the test process: publish, collect, call services/actions."""

    def __init__(self, name: str = 'wallie_test_probe') -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        configure_ros_env()
        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.messages: dict[str, list[Any]] = defaultdict(list)
        self._clients: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from wallie_common.runtime import spin_until_stopped
        spin_until_stopped(self.executor, self.context, self._stop)

    def subscribe(self, topic: str, msg_type, qos=None, raw: bool = False) -> list[Any]:
        """Collect every message on `topic` into the returned (live) list."""
        from wallie_common.qos import EVENT_QOS
        bucket = self.messages[topic]

        def cb(msg):
            with self._lock:
                bucket.append(msg)
        self.node.create_subscription(msg_type, topic, cb, qos or EVENT_QOS, raw=raw)
        return bucket

    def publisher(self, topic: str, msg_type, qos=None):
        from wallie_common.qos import EVENT_QOS
        return self.node.create_publisher(msg_type, topic, qos or EVENT_QOS)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str = '',
                 procs: Iterable[NodeProcess] = ()) -> None:
        """Poll `predicate` until true; on timeout fail with `what` and the nodes' logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        logs = '\n'.join(f'--- {p.name} (alive={p.alive()}) ---\n{p.log()[-4000:]}'
                         for p in procs)
        raise AssertionError(f'timed out after {timeout} s waiting for {what}\n{logs}')

    def wait_for_topic(self, topic: str, timeout: float = 20.0,
                       procs: Iterable[NodeProcess] = ()) -> None:
        full = topic if topic.startswith('/') else '/' + topic
        self.wait_for(lambda: any(n == full for n, _ in self.node.get_topic_names_and_types()),
                      timeout, f'topic {full}', procs)

    def wait_for_subscribers(self, publisher, count: int = 1, timeout: float = 20.0,
                             procs: Iterable[NodeProcess] = ()) -> None:
        self.wait_for(lambda: publisher.get_subscription_count() >= count, timeout,
                      f'{count} subscriber(s) on {publisher.topic_name}', procs)

    def call(self, srv_type, name: str, request, timeout: float = 20.0,
             resend_s: float | None = None):
        """Call a service and return its response (AssertionError on timeout).

        Clients are kept per service: a client created just before a call can lose the
        response while the server has not yet matched its reply reader (Fast DDS). With
        `resend_s`, an idempotent request is sent again when no answer came in that time.
        """
        from wallie_common import services
        key = (srv_type, name)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = self.node.create_client(srv_type, name)
        try:
            return services.call(client, request, timeout, resend_s=resend_s)
        except services.ServiceCallError as exc:
            raise AssertionError(str(exc)) from None

    def lifecycle_state(self, node_name: str, timeout: float = 10.0) -> str:
        from lifecycle_msgs.srv import GetState
        return self.call(GetState, f'{node_name}/get_state', GetState.Request(),
                         timeout, resend_s=2.0).current_state.label

    def lifecycle(self, node_name: str, transition: str, timeout: float = 60.0) -> bool:
        """Request a transition by label ('configure', 'activate', ...)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        ids = {'configure': Transition.TRANSITION_CONFIGURE,
               'activate': Transition.TRANSITION_ACTIVATE,
               'deactivate': Transition.TRANSITION_DEACTIVATE,
               'cleanup': Transition.TRANSITION_CLEANUP,
               'shutdown': Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}
        req = ChangeState.Request()
        req.transition.id = ids[transition]
        return bool(self.call(ChangeState, f'{node_name}/change_state', req, timeout).success)

    def activate(self, node_name: str, timeout: float = 120.0) -> None:
        """Bring a lifecycle node from unconfigured to active; fail loudly otherwise."""
        assert self.lifecycle(node_name, 'configure', timeout), f'{node_name}: configure failed'
        assert self.lifecycle(node_name, 'activate', timeout), f'{node_name}: activate failed'

    def set_params(self, node_name: str, **values: Any):
        """`ros2 param set`: return the list of SetParametersResult."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        req = SetParameters.Request()
        req.parameters = [Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        return self.call(SetParameters, f'{node_name}/set_parameters', req,
                         resend_s=3.0).results

    def get_params(self, node_name: str, *names: str) -> list[Any]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python
        req = GetParameters.Request(names=list(names))
        res = self.call(GetParameters, f'{node_name}/get_parameters', req, resend_s=2.0)
        return [parameter_value_to_python(v) for v in res.values]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.executor.shutdown(timeout_sec=1)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)
