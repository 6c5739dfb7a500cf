"""Run the graph for one turn and record every outbound socket call (used by test_no_network).

Meant to run inside a network namespace that has only loopback
(``unshare -n sh -c 'ip link set lo up && exec python tests/netns_driver.py --out DIR'``),
optionally with every node under ``strace`` (``--strace``). Writes DIR/result.json.

The nodes get no ROS_AUTOMATIC_DISCOVERY_RANGE: their own default (wallie_common.runtime)
must keep discovery on localhost. A turn is real (utterance -> ASR -> LLM -> TTS -> player)
when those stages exist, else a synthetic set of stamps through the metrics node.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wallie_testing.harness import Probe, configure_ros_env, executable  # noqa: E402
from wallie_testing.stages import (  # noqa: E402
    STAMP_ORDER_MS,
    available_stages,
    free_port,
    new_turn_id,
    publish_playback,
    publish_stamps,
    sockets_of,
    speech_16k,
    wait_active,
)

TRACE = 'trace=connect,sendto,sendmsg,sendmmsg'


class TracedNode:
    """A node executable as a process, optionally under strace (all threads, children)."""

    def __init__(self, name: str, exe: str, params: dict, out: Path, strace: bool,
                 env: dict[str, str]) -> None:
        self.name = name
        pfile = out / f'{name}.params.yaml'
        pfile.write_text(yaml.safe_dump({'/**': {'ros__parameters': params}}))
        cmd = executable(exe) + ['--ros-args', '--params-file', str(pfile),
                                 '-r', f'__node:={name}']
        self.trace = out / f'{name}.strace'
        if strace:
            cmd = ['strace', '-f', '-qq', '-e', TRACE, '-o', str(self.trace)] + cmd
        self.log_path = out / f'{name}.log'
        self._log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)

    def node_pid(self) -> int:
        """The node's own pid (the child of strace, or the process itself)."""
        children = Path(f'/proc/{self.proc.pid}/task/{self.proc.pid}/children')
        if children.exists():
            kids = children.read_text().split()
            if kids and 'strace' in Path(f'/proc/{self.proc.pid}/comm').read_text():
                return int(kids[0])
        return self.proc.pid

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def real_turn(probe: Probe, timeout: float) -> dict:
    """Speech on voice/utterance (with the gate's stamps) -> a TurnMetrics with audio."""
    from wallie_common import conversions, timeutil
    from wallie_common.qos import EVENT_QOS, UTTERANCE_QOS
    from wallie_interfaces.msg import StageStamp, TurnMetrics, UtteranceAudio, VoiceActivity
    turns = probe.subscribe('metrics/turn', TurnMetrics)
    utt = probe.publisher('voice/utterance', UtteranceAudio, UTTERANCE_QOS)
    act = probe.publisher('voice/activity', VoiceActivity, EVENT_QOS)
    stamps = probe.publisher('metrics/stamps', StageStamp, EVENT_QOS)
    probe.wait_for_subscribers(utt, 1, 30)
    time.sleep(1.0)
    pcm = speech_16k('What is the capital of France?')
    turn = new_turn_id('netns')
    end = timeutil.now_ns()
    msg = UtteranceAudio(turn_id=turn, seq=0, sample_rate=16000, is_final=True)
    msg.samples = conversions.to_int16_array(pcm)
    msg.speech_start = timeutil.to_msg(end - int(len(pcm) / 16000 * 1e9))
    msg.speech_end = timeutil.to_msg(end)
    publish_stamps(stamps, turn, {'speech_end': 0, 'endpoint': 1}, end, node='voice_gate')
    act.publish(VoiceActivity(event=VoiceActivity.END_OF_TURN, turn_id=turn,
                              speech_end=timeutil.to_msg(end)))
    utt.publish(msg)
    probe.wait_for(lambda: any(m.turn_id == turn for m in list(turns)), timeout,
                   'TurnMetrics of the real turn')
    m = next(m for m in list(turns) if m.turn_id == turn)
    return {'kind': 'real', 'turn_id': turn, 'e2e_ms': m.e2e_ms,
            'first_audible': timeutil.from_msg(m.first_audible)}


def synthetic_turn(probe: Probe, timeout: float) -> dict:
    from wallie_common import timeutil
    from wallie_interfaces.msg import PlaybackEvent, StageStamp, TurnMetrics
    turns = probe.subscribe('metrics/turn', TurnMetrics)
    stamps = probe.publisher('metrics/stamps', StageStamp)
    events = probe.publisher('playback/events', PlaybackEvent)
    probe.wait_for_subscribers(stamps, 1, 30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        turn = new_turn_id('netns')
        publish_stamps(stamps, turn, STAMP_ORDER_MS, timeutil.now_ns() - 10**9)
        publish_playback(events, turn, PlaybackEvent.FINISHED)
        try:
            probe.wait_for(lambda: any(m.turn_id == turn for m in list(turns)), 3, 'turn')
        except AssertionError:
            continue
        m = next(m for m in list(turns) if m.turn_id == turn)
        return {'kind': 'synthetic', 'turn_id': turn, 'e2e_ms': m.e2e_ms}
    raise AssertionError('no TurnMetrics for a synthetic turn')


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--out', required=True)
    parser.add_argument('--strace', action='store_true')
    parser.add_argument('--timeout', type=float, default=150.0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    interfaces = sorted(name for _, name in socket.if_nameindex())
    result: dict = {'netns': interfaces == ['lo'], 'interfaces': interfaces,
                    'strace': args.strace, 'nodes': {}, 'sockets': {}}
    configure_ros_env(str(out / 'roslog'))
    node_env = dict(os.environ)
    node_env.pop('ROS_AUTOMATIC_DISCOVERY_RANGE', None)   # the nodes' own default must hold
    node_env['WALLIE_HOME'] = str(out / 'home')
    stages, missing = available_stages()
    result['missing'] = missing
    nodes: list[TracedNode] = []
    probe = None
    try:
        port = free_port()
        for stage in stages:
            params = dict(stage.params, autostart=True)
            if stage.node == 'metrics':
                params.update({'prometheus.enabled': True, 'prometheus.port': port,
                               'home_dir': str(out / 'home')})
            nodes.append(TracedNode(stage.node, stage.exe, params, out, args.strace, node_env))
        probe = Probe('netns_probe')
        deadline = time.monotonic() + args.timeout
        result['nodes'] = wait_active(probe, nodes, deadline)
        active = {n for n, r in result['nodes'].items() if r['state'] == 'active'}
        if {'asr', 'llm', 'tts', 'player', 'metrics'} <= active:
            result['turn'] = real_turn(probe, max(30.0, deadline - time.monotonic()))
        else:
            result['turn'] = synthetic_turn(probe, 20.0)
        for node in nodes:
            if node.proc.poll() is None:
                result['sockets'][node.name] = sockets_of(node.node_pid())
    except Exception as exc:
        result['error'] = f'{exc!r}\n{traceback.format_exc()}'
    finally:
        if probe is not None:
            probe.close()
        for node in nodes:
            result['nodes'].setdefault(node.name, {})['exit_code'] = node.stop()
            result['nodes'][node.name]['log_tail'] = node.log_path.read_text(
                errors='replace')[-3000:]
    (out / 'result.json').write_text(json.dumps(result, indent=1, default=str))
    return 0 if 'error' not in result else 1


if __name__ == '__main__':
    sys.exit(main())
