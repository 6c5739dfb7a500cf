"""Shared helpers of the observability / privacy / fuzz graph tests.

* STAGES: the stage node executables of the graph contract, how to start them headless and
  how to check that a node still answers a good input (used by test_fuzz and
  test_no_network). A stage whose module is not importable yet is skipped with a reason.
* synthetic turns for the metrics node, test speech (espeak-ng), socket inspection.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

STAMP_ORDER_MS = {  # stage -> ms after the acoustic end of speech, a plausible turn
    'speech_end': 0, 'endpoint': 320, 'asr_final': 450, 'llm_first_token': 560,
    'first_chunk': 640, 'tts_first_audio': 720, 'first_audible': 760, 'llm_done': 900,
}


def new_turn_id(prefix: str = 'turn') -> str:
    """A unique turn id starting with `prefix`."""
    return f'{prefix}-{uuid.uuid4().hex[:12]}'


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# -- synthetic turns ---------------------------------------------------------------------
def publish_stamps(stamp_pub, turn_id: str, stages_ms: dict[str, float], base_ns: int,
                   node: str = 'test') -> None:
    """Publish a StageStamp of `turn_id` per stage, `ms` after `base_ns`."""
    from wallie_common import timeutil
    from wallie_interfaces.msg import StageStamp
    for stage, ms in stages_ms.items():
        stamp_pub.publish(StageStamp(turn_id=turn_id, stage=stage, node=node,
                                     stamp=timeutil.to_msg(base_ns + int(ms * 1e6))))


def publish_playback(event_pub, turn_id: str, event: int, flush_ms: float = 0.0) -> None:
    """Publish a PlaybackEvent of `turn_id`."""
    from wallie_interfaces.msg import PlaybackEvent
    event_pub.publish(PlaybackEvent(event=event, turn_id=turn_id, flush_ms=flush_ms))


# -- sockets -------------------------------------------------------------------------------
def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f'/proc/{pid}/fd')
    for fd in fd_dir.iterdir() if fd_dir.exists() else ():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[8:-1])
    return inodes


def _decode_addr(hex_addr: str) -> tuple[str, int]:
    host, port = hex_addr.split(':')
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # /proc stores IPv6 as four little-endian 32-bit words
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        ip = socket.inet_ntop(socket.AF_INET6, b''.join(words))
    return ip, int(port, 16)


def sockets_of(pid: int) -> list[dict[str, Any]]:
    """TCP listeners and bound UDP sockets owned by a process: proto, ip, port, state."""
    inodes = _socket_inodes(pid)
    out = []
    for proto in ('tcp', 'tcp6', 'udp', 'udp6'):
        path = Path(f'/proc/{pid}/net/{proto}')
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) < 10 or parts[9] not in inodes:
                continue
            ip, port = _decode_addr(parts[1])
            state = parts[3]
            if proto.startswith('tcp') and state != '0A':   # 0A = LISTEN
                continue
            out.append({'proto': proto, 'ip': ip, 'port': port})
    return out


# -- test speech ---------------------------------------------------------------------------
_SPEECH_CACHE: dict[str, np.ndarray] = {}


def speech_16k(text: str = 'What is the capital of France?') -> np.ndarray:
    """Mono int16 speech at 16 kHz synthesised by espeak-ng (cached per text)."""
    if text in _SPEECH_CACHE:
        return _SPEECH_CACHE[text]
    import soundfile
    import soxr
    exe = shutil.which('espeak-ng')
    if exe is None:
        raise RuntimeError('espeak-ng is not installed (apt-get install espeak-ng)')
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / 's.wav'
        subprocess.run([exe, '-v', 'en-us', '-s', '160', '-w', str(wav), text], check=True,
                       capture_output=True)
        data, rate = soundfile.read(str(wav), dtype='float32')
    if data.ndim > 1:
        data = data.mean(axis=1)
    data = soxr.resample(data, rate, 16000)
    pcm = (np.clip(data, -1, 1) * 32767 * 0.8).astype(np.int16)
    _SPEECH_CACHE[text] = pcm
    return pcm


# -- the stage nodes -------------------------------------------------------------------------
@dataclass
class Stage:
    """A stage node of the graph contract and how to test it headless."""

    node: str                       # fixed node name
    exe: str                        # console script
    module: str                     # module of its main()
    params: dict[str, Any] = field(default_factory=dict)
    # good-input check: (probe, procs) -> None, raises AssertionError with a reason
    check: Callable[..., None] | None = None
    ready_timeout_s: float = 120.0  # model loads happen in on_configure


# Headless parameters: the null sink / a file source instead of sound devices, CPU models.
# Names follow the contract's dotted groups; a stage that names them differently ignores
# these (ROS ignores undeclared overrides) and may fail to configure: the tests then say so.
HEADLESS: dict[str, dict[str, Any]] = {
    'capture': {'source': 'topic', 'topic.name': 'audio/raw'},
    'voice_gate': {'wake.engine': 'none'},
    'player': {'sink': 'null'},
    'asr': {'asr.device': 'cpu'},
    'llm': {'llm.max_tokens': 24},
    'tts': {},
}


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def wait_active(probe, nodes, deadline: float) -> dict:
    """Poll every node's lifecycle state until all are active or the rest have failed.

    `nodes`: objects with .name, .proc (Popen) and .log_path (NodeProcess, TracedNode).
    """
    states = {n.name: 'unknown' for n in nodes}
    while time.monotonic() < deadline:
        for node in nodes:
            if states[node.name] == 'active' or node.proc.poll() is not None:
                continue
            try:
                states[node.name] = probe.lifecycle_state(node.name, timeout=2)
            except AssertionError:
                states[node.name] = 'no answer'
        pending = [n for n in nodes if states[n.name] != 'active' and n.proc.poll() is None]
        if all('configure failed' in n.log_path.read_text(errors='replace') for n in pending):
            break
        time.sleep(0.5)
    return {n.name: {'state': states[n.name], 'alive': n.proc.poll() is None} for n in nodes}


def check_asr(probe, timeout: float = 30.0) -> None:
    """A spoken utterance on voice/utterance -> a final Transcript for that turn."""
    from wallie_common import conversions, timeutil
    from wallie_common.qos import EVENT_QOS, UTTERANCE_QOS
    from wallie_interfaces.msg import Transcript, UtteranceAudio, VoiceActivity
    got = probe.subscribe('transcript', Transcript)
    utt = probe.publisher('voice/utterance', UtteranceAudio, UTTERANCE_QOS)
    act = probe.publisher('voice/activity', VoiceActivity, EVENT_QOS)
    pcm = speech_16k()
    turn = new_turn_id('good-asr')
    now = timeutil.now_ns()
    start_ns = now - int(len(pcm) / 16000 * 1e9)
    half = len(pcm) // 2
    for seq, (piece, final) in enumerate(((pcm[:half], False), (pcm[half:], True))):
        msg = UtteranceAudio(turn_id=turn, seq=seq, sample_rate=16000, is_final=final)
        msg.samples = conversions.to_int16_array(piece)
        msg.speech_start = timeutil.to_msg(start_ns)
        if final:
            msg.speech_end = timeutil.to_msg(now)
            act.publish(VoiceActivity(event=VoiceActivity.END_OF_TURN, turn_id=turn,
                                      speech_end=timeutil.to_msg(now)))
        utt.publish(msg)
    if not _wait_for(lambda: any(t.turn_id == turn and t.is_final for t in list(got)),
                     timeout):
        raise AssertionError(f'no final transcript for good turn {turn} within {timeout} s')


def check_llm(probe, timeout: float = 45.0) -> None:
    """A final transcript -> ReplyChunks for that turn."""
    from wallie_common import timeutil
    from wallie_interfaces.msg import ReplyChunk, Transcript
    got = probe.subscribe('reply', ReplyChunk)
    pub = probe.publisher('transcript', Transcript)
    turn = new_turn_id('good-llm')
    pub.publish(Transcript(turn_id=turn, text='Say hello.', is_final=True, confidence=0.9,
                           language='en', speech_end=timeutil.to_msg(timeutil.now_ns())))
    if not _wait_for(lambda: any(r.turn_id == turn for r in list(got)), timeout):
        raise AssertionError(f'no reply chunk for good transcript {turn} within {timeout} s')


def check_tts(probe, timeout: float = 30.0) -> None:
    """A reply chunk -> audio/out frames for that turn."""
    from wallie_common.qos import REPLY_AUDIO_QOS
    from wallie_interfaces.msg import AudioFrame, ReplyChunk
    got = probe.subscribe('audio/out', AudioFrame, REPLY_AUDIO_QOS)
    pub = probe.publisher('reply', ReplyChunk)
    turn = new_turn_id('good-tts')
    pub.publish(ReplyChunk(turn_id=turn, index=0, text='Hello there.', is_final=True))
    if not _wait_for(lambda: any(f.stream_id == turn for f in list(got)), timeout):
        raise AssertionError(f'no audio/out for good reply chunk {turn} within {timeout} s')


def check_player(probe, timeout: float = 10.0) -> None:
    """audio/out frames of a reply -> a PlaybackEvent for that turn."""
    from wallie_common import conversions, timeutil
    from wallie_common.qos import REPLY_AUDIO_QOS
    from wallie_interfaces.msg import AudioFrame, PlaybackEvent
    got = probe.subscribe('playback/events', PlaybackEvent)
    pub = probe.publisher('audio/out', AudioFrame, REPLY_AUDIO_QOS)
    turn = new_turn_id('good-player')
    t = np.arange(1600) / 16000.0
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    for i in range(3):
        frame = conversions.audio_to_frame(tone, 16000, timeutil.now_ns(), seq=i,
                                           frame_id='tts', stream_id=turn, segment=0)
        frame.end_of_segment = frame.end_of_stream = i == 2
        pub.publish(frame)
    if not _wait_for(lambda: any(e.turn_id == turn for e in list(got)), timeout):
        raise AssertionError(f'no playback event for good reply audio {turn} within '
                             f'{timeout} s')


def check_gate(probe, timeout: float = 20.0) -> None:
    """push_to_talk + speech on audio/in -> voice activity or utterance audio."""
    from std_srvs.srv import SetBool

    from wallie_common import conversions, timeutil
    from wallie_common.qos import AUDIO_QOS, UTTERANCE_QOS
    from wallie_interfaces.msg import AudioFrame, UtteranceAudio, VoiceActivity
    acts = probe.subscribe('voice/activity', VoiceActivity)
    utts = probe.subscribe('voice/utterance', UtteranceAudio, UTTERANCE_QOS)
    before = len(acts) + len(utts)
    pub = probe.publisher('audio/in', AudioFrame, AUDIO_QOS)
    try:
        probe.call(SetBool, 'push_to_talk', SetBool.Request(data=True), timeout=10)
    except AssertionError:
        pass  # wake engine 'none' (always on) does not need it
    pcm = np.concatenate([np.zeros(8000, np.int16), speech_16k(),
                          np.zeros(16000, np.int16)])
    frame = 512
    for seq, i in enumerate(range(0, len(pcm) - frame, frame)):
        pub.publish(conversions.audio_to_frame(pcm[i:i + frame], 16000, timeutil.now_ns(),
                                               seq=seq, frame_id='test'))
        time.sleep(frame / 16000 / 2)           # twice real time
    if not _wait_for(lambda: len(acts) + len(utts) > before, timeout):
        raise AssertionError('no voice/activity or voice/utterance after speech on audio/in')


def check_capture(probe, timeout: float = 10.0) -> None:
    """Frames on the capture's input topic (source=topic: audio/raw) -> frames on audio/in."""
    from wallie_common import conversions, timeutil
    from wallie_common.qos import AUDIO_QOS
    from wallie_interfaces.msg import AudioFrame
    got = probe.subscribe('audio/in', AudioFrame, AUDIO_QOS)
    pub = probe.publisher('audio/raw', AudioFrame, AUDIO_QOS)
    n0 = len(got)
    tone = (np.sin(2 * np.pi * 300 * np.arange(1600) / 16000) * 3000).astype(np.int16)
    deadline = time.monotonic() + timeout
    seq = 0
    while time.monotonic() < deadline and len(got) <= n0:
        pub.publish(conversions.audio_to_frame(tone, 16000, timeutil.now_ns(), seq=seq,
                                               frame_id='test'))
        seq += 1
        time.sleep(0.1)
    if len(got) <= n0:
        raise AssertionError(f'no audio/in frame for frames on audio/raw within {timeout} s')


def check_metrics(probe, timeout: float = 15.0) -> None:
    """A complete set of stamps + FINISHED -> one TurnMetrics for that turn.

    The publishers and the subscription are new: the first turn is sent once they are
    matched with the metrics node (bounded wait), and a fresh turn every 3 s after that,
    so a message lost to discovery on a busy machine does not count as a failure."""
    from wallie_common import timeutil
    from wallie_interfaces.msg import PlaybackEvent, StageStamp, TurnMetrics
    got = probe.subscribe('metrics/turn', TurnMetrics)
    stamps = probe.publisher('metrics/stamps', StageStamp)
    events = probe.publisher('playback/events', PlaybackEvent)
    deadline = time.monotonic() + timeout
    _wait_for(lambda: stamps.get_subscription_count() > 0
              and events.get_subscription_count() > 0
              and probe.node.count_publishers('metrics/turn') > 0,
              min(5.0, timeout / 2))
    sent: list[str] = []
    while time.monotonic() < deadline:
        turn = new_turn_id('good-metrics')
        sent.append(turn)
        publish_stamps(stamps, turn, STAMP_ORDER_MS, timeutil.now_ns() - 10**9)
        publish_playback(events, turn, PlaybackEvent.FINISHED)
        if _wait_for(lambda: any(m.turn_id in sent for m in list(got)),
                     min(3.0, max(0.1, deadline - time.monotonic()))):
            return
    raise AssertionError(f'no TurnMetrics for good turns {sent} within {timeout} s')


STAGES: dict[str, Stage] = {
    'capture': Stage('capture', 'capture_node', 'wallie_audio.capture_node',
                     HEADLESS['capture'], check_capture),
    'voice_gate': Stage('voice_gate', 'voice_gate_node', 'wallie_audio.voice_gate_node',
                        HEADLESS['voice_gate'], check_gate),
    'player': Stage('player', 'player_node', 'wallie_audio.player_node', HEADLESS['player'],
                    check_player),
    'asr': Stage('asr', 'asr_node', 'wallie_asr.asr_node', HEADLESS['asr'], check_asr),
    'llm': Stage('llm', 'llm_node', 'wallie_llm.llm_node', HEADLESS['llm'], check_llm),
    'tts': Stage('tts', 'tts_node', 'wallie_tts.tts_node', HEADLESS['tts'], check_tts),
    'metrics': Stage('metrics', 'metrics_node', 'wallie_manager.metrics_node',
                     {'metrics.settle_ms': 100}, check_metrics, ready_timeout_s=30.0),
}


def available_stages(names=None) -> tuple[list[Stage], dict[str, str]]:
    """The stages to run ($WALLIE_TEST_STAGES narrows them), and why the others are not."""
    chosen, missing = [], {}
    wanted = os.environ.get('WALLIE_TEST_STAGES')
    for name, stage in STAGES.items():
        if names is not None and name not in names:
            continue
        if wanted and name not in wanted.split(','):
            missing[name] = 'not in $WALLIE_TEST_STAGES'
        else:
            chosen.append(stage)
    return chosen, missing
