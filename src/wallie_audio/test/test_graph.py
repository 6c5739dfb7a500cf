"""Graph tests: real capture / voice_gate / player processes over DDS, real models,
espeak-ng speech synthesized at test time."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from wallie_audio import fixtures as F
from wallie_audio.echo import ReferenceTimeline

pytestmark = pytest.mark.skipif(not F.have_espeak(), reason='espeak-ng not installed')
NS = 1_000_000_000


def _msgs():
    from wallie_interfaces.msg import (
        AudioFrame,
        Interrupt,
        PlaybackEvent,
        StageStamp,
        UtteranceAudio,
        VoiceActivity,
        WakeWord,
    )
    return AudioFrame, Interrupt, PlaybackEvent, StageStamp, UtteranceAudio, VoiceActivity, \
        WakeWord


def test_wake_word_and_utterance_boundaries(probe, node_process, tmp_path):
    AudioFrame, _, _, StageStamp, UtteranceAudio, VoiceActivity, WakeWord = _msgs()
    from wallie_common import timeutil
    from wallie_common.qos import AUDIO_QOS, UTTERANCE_QOS
    sc = F.scene([('silence', 0.5),
                  ('speech', ('what is the capital of france', 'en-gb+m3')),
                  ('silence', 1.0), ('wake', ('hey jarvis', 'en-us')), ('silence', 0.3),
                  ('speech', ('set a timer for ten minutes', 'en-us+f3')),
                  ('silence', 1.5)], noise_db=-55)
    wav = sc.write(tmp_path / 'scene.wav')
    wakes = probe.subscribe('voice/wake', WakeWord)
    acts = probe.subscribe('voice/activity', VoiceActivity)
    utts = probe.subscribe('voice/utterance', UtteranceAudio, UTTERANCE_QOS)
    stamps = probe.subscribe('metrics/stamps', StageStamp)
    mic = probe.subscribe('audio/in', AudioFrame, AUDIO_QOS)
    gate = node_process('gate_node', params={
        'autostart': True, 'wake.engine': 'openwakeword', 'wake.word': 'hey_jarvis',
        'wake.followup_ms': 0})
    probe.wait_for_topic('voice/activity', procs=[gate])
    # live parameter changes: out of range rejected with a reason, valid one applied
    bad = probe.set_params('voice_gate', **{'endpoint.min_silence_ms': 50})
    assert not bad[0].successful and 'range' in bad[0].reason
    ok = probe.set_params('voice_gate', **{'endpoint.min_silence_ms': 450})
    assert ok[0].successful
    assert probe.get_params('voice_gate', 'endpoint.min_silence_ms') == [450]
    cap = node_process('capture_node', params={
        'autostart': True, 'source': 'file', 'file.path': str(wav), 'file.realtime': True,
        'file.lead_silence_s': 0.5})
    end_evt = VoiceActivity.END_OF_TURN
    probe.wait_for(lambda: any(a.event == end_evt for a in acts), sc.duration_s + 15,
                   'END_OF_TURN', [gate, cap])
    time.sleep(0.3)
    assert len(wakes) == 1 and wakes[0].keyword == 'hey_jarvis'
    tid = wakes[0].turn_id
    ends = [a for a in acts if a.event == end_evt]
    assert len(ends) == 1 and ends[0].turn_id == tid
    # known speech end on the capture clock: first frame stamp - its offset + lead silence
    f0 = min(mic, key=lambda m: m.seq)
    t0 = timeutil.from_msg(f0.header.stamp) - (f0.seq - 1) * 32_000_000
    truth_ns = t0 + int((0.5 + sc.segments[2].end_s) * NS)
    err_ms = (timeutil.from_msg(ends[0].speech_end) - truth_ns) / 1e6
    assert -100 <= err_ms <= 200, err_ms
    pieces = sorted([u for u in utts if u.turn_id == tid], key=lambda u: u.seq)
    assert pieces and pieces[-1].is_final and not pieces[-1].discarded
    assert [p.seq for p in pieces] == list(range(len(pieces)))
    total_s = sum(len(p.samples) for p in pieces) / 16000
    assert total_s >= sc.segments[2].end_s - sc.segments[2].start_s
    # no utterance for the question without the wake word
    assert {u.turn_id for u in utts} == {tid}
    stages = {s.stage for s in stamps if s.turn_id == tid}
    assert {'speech_end', 'endpoint'} <= stages
    assert any(a.event == VoiceActivity.SPEECH_PROBABLY_ENDED for a in acts)
    assert cap.alive() and gate.alive()


class MicSim:
    """Publishes real-time microphone frames: the played reference (from audio/playback)
    through a simulated echo path, plus noise, plus optional user speech."""

    def __init__(self, probe, delay_ms=60.0, gain=0.5, noise_db=-55.0) -> None:
        AudioFrame = _msgs()[0]
        from wallie_common.conversions import audio_to_frame, frame_to_audio
        from wallie_common.qos import AUDIO_QOS
        self._to_frame = audio_to_frame
        self._from_frame = frame_to_audio
        self.pub = probe.publisher('audio/in', AudioFrame, AUDIO_QOS)
        self.timeline = ReferenceTimeline(10.0)
        self.lock = threading.Lock()
        probe.node.create_subscription(AudioFrame, 'audio/playback', self._on_ref, AUDIO_QOS)
        self.delay = int(delay_ms * 16)
        self.gain = gain
        self.noise = 10 ** (noise_db / 20)
        self.user: np.ndarray | None = None
        self.gaps = 0
        self.last_seq = 0
        self.user_at_ns = 0
        self.stop = threading.Event()
        self.rng = np.random.default_rng(0)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_ref(self, msg) -> None:
        if self.last_seq and msg.seq != self.last_seq + 1:
            self.gaps += 1
        self.last_seq = msg.seq
        a = self._from_frame(msg)
        with self.lock:
            self.timeline.write(a.mono, a.stamp_ns)

    def say(self, x: np.ndarray, at_ns: int) -> None:
        self.user, self.user_at_ns = x, at_ns

    def _run(self) -> None:
        t = time.time_ns() - 100_000_000
        seq = 0
        while not self.stop.is_set():
            wait = (t + 32_000_000 - time.time_ns()) / NS
            if wait > 0:
                time.sleep(wait)
            idx = self.timeline.index(t)
            with self.lock:
                ref = self.timeline.read(idx - self.delay, 512)
                tail = self.timeline.read(idx - self.delay - 120, 512)
            x = self.gain * (ref + 0.3 * tail) + self.rng.normal(0, self.noise, 512)
            if self.user is not None:
                off = (t - self.user_at_ns) * 16000 // NS
                if -512 < off < self.user.shape[0]:
                    seg = np.zeros(512, np.float32)
                    lo, hi = max(0, off), min(self.user.shape[0], off + 512)
                    seg[lo - off:hi - off] = self.user[lo:hi]
                    x = x + seg
            seq += 1
            self.pub.publish(self._to_frame(x.astype(np.float32), 16000, t, seq=seq))
            t += 32_000_000


def _publish_reply(pub, stream_id: str, audio22k: np.ndarray) -> None:
    from wallie_common.conversions import audio_to_frame
    n = 2205                                  # 100 ms frames at 22.05 kHz, two segments
    half = (audio22k.shape[0] // 2 // n) * n
    frames = list(range(0, audio22k.shape[0], n))
    for k, i in enumerate(frames):
        seg = 0 if i < half else 1
        m = audio_to_frame(audio22k[i:i + n], 22050, time.time_ns(), seq=k,
                           frame_id='tts', stream_id=stream_id, segment=seg)
        m.end_of_segment = (i + n == half) or k == len(frames) - 1
        m.end_of_stream = k == len(frames) - 1
        pub.publish(m)


def test_echo_does_not_barge_in_but_user_does_and_player_flushes(probe, node_process):
    import soxr
    AudioFrame, Interrupt, PlaybackEvent, _, UtteranceAudio, VoiceActivity, _ = _msgs()
    from wallie_common.qos import REPLY_AUDIO_QOS, UTTERANCE_QOS
    reply16 = F.synth('The capital of France is Paris. It is a large city with many museums, '
                      'and the river Seine flows through it.') * 0.6
    reply = soxr.resample(reply16, 16000, 22050).astype(np.float32)
    user = F.synth('stop, what about germany', 'en-us+f3')
    user = user * (0.5 / float(np.max(np.abs(user))))
    ints = probe.subscribe('interrupt', Interrupt)
    events = probe.subscribe('playback/events', PlaybackEvent)
    acts = probe.subscribe('voice/activity', VoiceActivity)
    utts = probe.subscribe('voice/utterance', UtteranceAudio, UTTERANCE_QOS)
    out = probe.publisher('audio/out', AudioFrame, REPLY_AUDIO_QOS)
    gate = node_process('gate_node', params={'autostart': True, 'wake.engine': 'none'})
    player = node_process('player_node', params={'autostart': True, 'sink': 'null'})
    procs = [gate, player]
    probe.wait_for_topic('playback/events', procs=procs)
    probe.wait_for_topic('voice/activity', procs=procs)
    probe.wait_for_subscribers(out, 1, procs=procs)
    mic = MicSim(probe, delay_ms=60, gain=0.5)
    mic.thread.start()
    try:
        time.sleep(1.0)
        # 1) Wallie's own reply, echoed into the mic, must not interrupt it
        _publish_reply(out, 'replyA', reply)
        done = PlaybackEvent.FINISHED
        probe.wait_for(lambda: any(e.event != PlaybackEvent.FIRST_AUDIBLE
                                   and e.turn_id == 'replyA' for e in events),
                       reply16.shape[0] / 16000 + 8, 'replyA finished', procs)
        time.sleep(0.5)
        assert not ints, f'false barge-in on own echo: {ints} (sim missed {mic.gaps} refs)'
        assert not any(a.event == VoiceActivity.BARGE_IN for a in acts)
        fin = [e for e in events if e.turn_id == 'replyA' and e.event == done][0]
        assert fin.segments_complete == 2
        assert abs(fin.played_s - reply16.shape[0] / 16000) < 0.1
        # 2) the user talks over the next reply: interrupt + flush
        _publish_reply(out, 'replyB', reply)
        first = PlaybackEvent.FIRST_AUDIBLE
        probe.wait_for(lambda: any(e.event == first and e.turn_id == 'replyB' for e in events),
                       5, 'replyB audible', procs)
        mic.say(user, time.time_ns() + 1_500_000_000)
        probe.wait_for(lambda: any(i.turn_id == 'replyB' for i in ints), 8,
                       'barge-in interrupt', procs)
        flushed = PlaybackEvent.FLUSHED
        probe.wait_for(lambda: any(e.event == flushed and e.turn_id == 'replyB'
                                   for e in events), 3, 'FLUSHED', procs)
        fl = [e for e in events if e.event == flushed and e.turn_id == 'replyB'][0]
        assert fl.flush_ms < 50, fl.flush_ms
        assert 1.2 < fl.played_s < reply16.shape[0] / 16000 - 1.0
        assert not any(e.event == done and e.turn_id == 'replyB' for e in events)
        barge = [a for a in acts if a.event == VoiceActivity.BARGE_IN]
        assert len(barge) == 1
        # the user's words become the next turn
        probe.wait_for(lambda: any(u.turn_id == barge[0].turn_id and u.is_final for u in utts),
                       6, 'barge-in turn final utterance', procs)
    finally:
        mic.stop.set()
        mic.thread.join(2)
    assert gate.alive() and player.alive()
