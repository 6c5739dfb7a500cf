"""`wallie up` with the real stages and models: ready, answers, and survives kill -9 of each.

The microphone is replaced by the capture node's topic source: the test speaks a committed
fixture (a rosbag2 of "What is the capital of France?") into `audio/raw` in real time,
and the player writes to a real-time null sink. Every stage is killed with SIGKILL in turn;
it must come back to active and the next question must be answered again.
"""

import os
import signal
import time
from copy import deepcopy

import pytest
from rclpy.serialization import deserialize_message
from std_msgs.msg import String

from wallie_cli import fixture_set
from wallie_common import timeutil
from wallie_common.qos import AUDIO_QOS, EVENT_QOS, STATE_QOS
from wallie_interfaces.msg import (
    AssistantState,
    AudioFrame,
    PlaybackEvent,
    ReplyChunk,
    StageStamp,
)
from wallie_testing.up import alive, params_of, state_of

pytestmark = pytest.mark.slow

BAGS = fixture_set.default_fixtures_dir() / 'bags'
QUESTION = BAGS / 'f_capital_1_joe'       # "What is the capital of France?"
FOLLOW_UP = BAGS / 'f_capital_2_joe'      # "And what about Germany?"
KILL_ORDER = ['capture', 'voice_gate', 'asr', 'tts', 'player', 'llm']


def _frames(bag):
    if not bag.exists():
        pytest.skip(f'fixture bag {bag.name} missing')
    from wallie_audio.capture_node import read_bag_frames
    return [deserialize_message(raw, AudioFrame) for _, raw in read_bag_frames(str(bag))]


def _silence_like(frame):
    silent = deepcopy(frame)
    silent.data = bytes(len(frame.data))            # zeros in any integer encoding
    return silent


@pytest.fixture(scope='module')
def question_frames():
    return _frames(QUESTION), _frames(FOLLOW_UP)


class Conversation:
    """Speak the fixture into the graph and collect what comes back."""

    def __init__(self, probe):
        self.probe = probe
        self.mic = probe.publisher('audio/raw', AudioFrame, AUDIO_QOS)
        self.replies = probe.subscribe('reply', ReplyChunk, EVENT_QOS)
        self.playback = probe.subscribe('playback/events', PlaybackEvent, EVENT_QOS)

    def reset(self):
        from wallie_interfaces.srv import ResetConversation
        assert self.probe.call(ResetConversation, 'reset_conversation',
                               ResetConversation.Request(), timeout=10.0).success

    def ask(self, frames, timeout=60.0):
        """One turn: returns (reply text, seconds from the end of the audio to audible)."""
        n_play = len(self.playback)
        n_reply = len(self.replies)
        period = 0.032
        # A microphone streams all the time; this one only while it speaks. Lead with 1.5 s
        # of silence, as a microphone would have sent, so that a capture respawned a moment
        # ago (its subscription still being matched) misses silence, not the question.
        self.probe.wait_for(lambda: self.mic.get_subscription_count() > 0, 10,
                            'capture subscribed to audio/raw')
        lead = [_silence_like(frames[0]) for _ in range(int(1.5 / period))]
        t_next = time.monotonic()
        for frame in lead + list(frames):
            frame.header.stamp = timeutil.to_msg(timeutil.now_ns())
            self.mic.publish(frame)
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
        t_end = time.monotonic()

        def finished():
            return any(e.event == PlaybackEvent.FINISHED for e in self.playback[n_play:])
        self.probe.wait_for(finished, timeout, 'a spoken reply')
        done = next(e for e in self.playback[n_play:] if e.event == PlaybackEvent.FINISHED)
        text = ' '.join(c.text for c in self.replies if c.turn_id == done.turn_id)
        self.last = (f'events {[(e.event, e.turn_id) for e in self.playback[n_play:]]} '
                     f'replies {[(c.turn_id, c.text) for c in self.replies[n_reply:]]}')
        return text, time.monotonic() - t_end


def test_real_graph_ready_answers_and_recovers_each_stage(up, probe, question_frames, tmp_path):
    cfg_home = tmp_path / 'home'
    cfg_home.mkdir()
    (cfg_home / 'config.toml').write_text('wake_word_sensitivity = 0.65\n')
    states = probe.subscribe('assistant/state', AssistantState, qos=STATE_QOS)
    history = probe.subscribe('llm/history', String, qos=STATE_QOS)
    t0 = time.monotonic()
    stamps = probe.subscribe('metrics/stamps', StageStamp, EVENT_QOS)
    u = up('--profile', 'cpu', '--output', 'null', '--no-wake',
           '--set', 'capture:source=topic', '--set', 'manager:watch.period_s=0.2',
           '--set', 'manager:governor.enabled=false',
           env={'WALLIE_LLM_MAX_TOKENS': '48'}, stages=None)
    u.wait_ready(180)
    print(f'\nwallie up -> ready: {time.monotonic() - t0:.2f} s')
    probe.wait_for(lambda: states and states[-1].ready, 10, 'ready on assistant/state')
    # configuration landed on the real nodes
    assert params_of(probe, 'llm', 'llm.max_tokens') == [48]
    assert params_of(probe, 'voice_gate', 'wake.sensitivity', 'wake.engine') == [0.65, 'none']
    assert params_of(probe, 'capture', 'source') == ['topic']
    assert params_of(probe, 'player', 'sink') == ['null']
    # an invalid value is refused with a reason, and the node keeps running
    res = probe.set_params('llm', **{'llm.max_tokens': -3})[0]
    assert not res.successful and res.reason
    assert state_of(probe, 'llm') == 'active' and alive(u.pid('llm'))

    question, follow_up = question_frames
    talk = Conversation(probe)
    talk.reset()
    text, latency = talk.ask(question)
    assert 'paris' in text.lower(), text
    print(f'first answer {latency:.2f} s after the question: {text!r}')

    recovery = {}
    for name in KILL_ORDER:
        old = u.pid(name)
        t_kill = time.monotonic()
        os.kill(old, signal.SIGKILL)
        u.wait(lambda n=name, o=old: u.pid(n) not in (None, o) and
               u.stage(n).get('phase') == 'active' and u.stage(n).get('recoveries', 0) >= 1,
               120, f'{name} back to active')
        recovery[name] = time.monotonic() - t_kill
        u.wait(lambda: u.state().get('ready'), 30, 'ready again')
        assert state_of(probe, name) == 'active'
        if name == 'llm':
            # The conversation survived the LLM restart: a follow-up that needs it.
            assert 'conversation history restored' in u.log('manager')
            probe.wait_for(lambda: history and 'paris' in history[-1].data.lower(), 10,
                           'the restarted llm still has the earlier turns')
            text, latency = talk.ask(follow_up)
            # The follow-up is answered from the restored conversation. (Whether the 0.5B
            # model says "Berlin" is model quality, not memory: it sometimes says "Germany is
            # the capital of Germany", so the memory is checked on the history itself.)
            assert text.strip(), (name, talk.last)
            probe.wait_for(lambda: history and 'paris' in history[-1].data.lower() and
                           'germany' in history[-1].data.lower(), 10,
                           'the follow-up joined the restored conversation')
        else:
            talk.reset()
            text, latency = talk.ask(question)
            assert 'paris' in text.lower(), (name, text, talk.last)
    turns = {}
    for m in stamps:
        turns.setdefault(m.turn_id, {})[m.stage] = timeutil.from_msg(m.stamp)
    for tid, st in turns.items():
        if 'speech_end' in st and 'first_audible' in st:
            print(f'turn {tid}: e2e {(st["first_audible"] - st["speech_end"]) / 1e6:.0f} ms',
                  {k: round((v - st['speech_end']) / 1e6) for k, v in sorted(
                      st.items(), key=lambda kv: kv[1])})
    print('recovery after kill -9 (s): ' +
          ', '.join(f'{k} {v:.2f}' for k, v in recovery.items()))
    pids = [u.pid(n) for n in u.names + ['manager']]
    assert u.stop() == 0
    for pid in pids:
        assert pid is None or not alive(pid)
