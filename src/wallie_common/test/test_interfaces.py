"""Every message type of the contract round-trips through rclpy serialization and DDS."""

import importlib
import subprocess
import sys
import textwrap

import pytest
from rclpy.serialization import deserialize_message, serialize_message

MSGS = ['AudioFrame', 'VoiceActivity', 'WakeWord', 'UtteranceAudio', 'Transcript',
        'ReplyChunk', 'Interrupt', 'PlaybackEvent', 'AssistantState', 'StageStamp',
        'TurnMetrics']
SRVS = ['ResetConversation', 'Transcribe']
ACTIONS = ['Ask', 'Speak', 'Listen']


def _sample(cls):
    """A message with every field set to a non-default value."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header
    msg = cls()
    for name, typ in cls.get_fields_and_field_types().items():
        if typ == 'string':
            value = f'{name} ünïcödé'
        elif typ == 'boolean':
            value = True
        elif typ in ('float', 'double'):
            value = 1.5
        elif typ in ('uint8', 'uint32', 'uint64', 'int16', 'int32', 'octet'):
            value = 7
        elif typ == 'sequence<uint8>':
            value = bytes(range(16))
        elif typ == 'sequence<int16>':
            value = [-32768, 0, 32767]
        elif typ == 'builtin_interfaces/Time':
            value = Time(sec=12, nanosec=345)
        elif typ == 'std_msgs/Header':
            value = Header(stamp=Time(sec=3, nanosec=4), frame_id='mic')
        else:
            raise AssertionError(f'{cls.__name__}.{name}: no sample for type {typ}')
        setattr(msg, name, value)
    return msg


def _all_types():
    msg = importlib.import_module('wallie_interfaces.msg')
    srv = importlib.import_module('wallie_interfaces.srv')
    act = importlib.import_module('wallie_interfaces.action')
    types = [getattr(msg, n) for n in MSGS]
    for n in SRVS:
        types += [getattr(srv, n).Request, getattr(srv, n).Response]
    for n in ACTIONS:
        a = getattr(act, n)
        types += [a.Goal, a.Result, a.Feedback]
    return types


@pytest.mark.parametrize('cls', _all_types(), ids=lambda c: c.__module__.split('.')[1] + '.'
                         + c.__name__)
def test_serialization_round_trip(cls):
    msg = _sample(cls)
    back = deserialize_message(serialize_message(msg), cls)
    assert back == msg


def test_every_field_is_commented():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / 'wallie_interfaces'
    for path in list(root.glob('msg/*.msg')) + list(root.glob('srv/*.srv')) + \
            list(root.glob('action/*.action')):
        for line in path.read_text().splitlines():
            s = line.strip()
            if not s or s.startswith('#') or s == '---':
                continue
            # a field or constant line: documented inline, or the block above says what it is
            assert '#' in s or s.split()[0] in ('std_msgs/Header', 'bool', 'string', 'uint8',
                                                 'float32', 'float64', 'uint32', 'int16[]',
                                                 'builtin_interfaces/Time'), (path, s)


SUBSCRIBER = textwrap.dedent('''
    import sys, time, importlib, rclpy
    from rclpy.serialization import serialize_message
    from wallie_common.qos import EVENT_QOS
    args = sys.argv[1:]
    names = args[:args.index('--ros-args')] if '--ros-args' in args else args
    rclpy.init()
    node = rclpy.create_node('roundtrip_echo')
    pubs, subs = {}, []
    for n in names:
        cls = getattr(importlib.import_module('wallie_interfaces.msg'), n)
        pubs[n] = node.create_publisher(cls, 'echo/out/' + n, EVENT_QOS)
        subs.append(node.create_subscription(
            cls, 'echo/in/' + n, (lambda m, n=n: pubs[n].publish(m)), EVENT_QOS))
    deadline = time.monotonic() + 60
    while rclpy.ok() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
''')


def test_every_message_crosses_processes(probe, tmp_path):
    """Each message goes to another process over DDS and comes back intact."""
    from wallie_testing.harness import NodeProcess
    script = tmp_path / 'echo.py'
    script.write_text(SUBSCRIBER)
    echo = NodeProcess(str(script), name='echo', args=MSGS, workdir=tmp_path)
    try:
        msg_mod = importlib.import_module('wallie_interfaces.msg')
        received = {}
        pubs = {}
        for n in MSGS:
            cls = getattr(msg_mod, n)
            received[n] = probe.subscribe('echo/out/' + n, cls)
            pubs[n] = probe.publisher('echo/in/' + n, cls)
        for n in MSGS:
            probe.wait_for_subscribers(pubs[n], procs=[echo])
        samples = {n: _sample(getattr(msg_mod, n)) for n in MSGS}
        for n in MSGS:
            pubs[n].publish(samples[n])
        probe.wait_for(lambda: all(received[n] for n in MSGS), 20, 'echoed messages', [echo])
        for n in MSGS:
            assert received[n][0] == samples[n], n
    finally:
        echo.kill()


def test_import_without_extra_env():
    """`import wallie_interfaces.msg` works in the venv with a minimal environment."""
    env = {'PATH': '/usr/bin:/bin', 'HOME': '/tmp'}
    out = subprocess.run([sys.executable, '-c', 'import wallie_interfaces.msg as m; '
                          'print(m.AudioFrame().sample_rate)'],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '16000'
