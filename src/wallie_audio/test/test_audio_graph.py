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
    gate = node_process('voice_gate_node', params={
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
    # vad.end_offset_ms compensates Silero's lag: the bench's fixtures are within +-40 ms
    assert -60 <= err_ms <= 60, err_ms
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
    through a simulated echo path, plus noise, plus optional user speech.

    In a room the played sound is always in the microphone. Here it only is if the sim has
    received the reference in time; on a starved machine (CPU shared with other jobs) a
    reference frame can arrive late, and a mic frame made without it is not what a room
    would record (the canceller then "removes" echo that is not there). So while reference
    frames are due (from the player's FIRST_AUDIBLE to the audible end its FINISHED/FLUSHED
    reports, and until the player has been silent for a second), a mic frame waits, up to
    1 s, for its echo window; it keeps its capture stamp, like a real driver that delivers
    a frame late."""

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
        from wallie_common.qos import EVENT_QOS
        from wallie_interfaces.msg import PlaybackEvent
        self._evt = PlaybackEvent
        probe.node.create_subscription(PlaybackEvent, 'playback/events', self._on_event,
                                       EVENT_QOS)
        self.playing: dict[str, tuple[int, int]] = {}   # reply -> audible (start, end | 0)
        self.delay = int(delay_ms * 16)
        self.gain = gain
        self.noise = 10 ** (noise_db / 20)
        self.user: np.ndarray | None = None
        self.gaps = 0
        self.last_seq = 0
        self.last_ref_at = 0.0
        self.late = 0                 # frames made without their (late) reference
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
            self.last_ref_at = time.monotonic()

    def _on_event(self, msg) -> None:
        from wallie_common import timeutil
        with self.lock:
            start = timeutil.from_msg(msg.first_audible)
            if msg.event == self._evt.FIRST_AUDIBLE:
                self.playing[msg.turn_id] = (start, 0)
                self.last_ref_at = time.monotonic()         # its reference is due
            elif msg.event in (self._evt.FINISHED, self._evt.FLUSHED) and start > 0:
                self.playing[msg.turn_id] = (start, start + int(msg.played_s * NS))

    def _echo_ready(self, t: int) -> bool:
        need = t - self.delay * NS // 16000 + 32_000_000
        with self.lock:
            have = self.timeline.last_write_ns
            return time.monotonic() - self.last_ref_at > 1.0 or all(
                need <= start or have >= (min(need, end) if end else need)
                for start, end in self.playing.values())

    def say(self, x: np.ndarray, at_ns: int) -> None:
        self.user, self.user_at_ns = x, at_ns

    def _run(self) -> None:
        t = time.time_ns() - 100_000_000
        seq = 0
        while not self.stop.is_set():
            wait = (t + 32_000_000 - time.time_ns()) / NS
            if wait > 0:
                time.sleep(wait)
            deadline = time.monotonic() + 1.0
            while not self._echo_ready(t) and time.monotonic() < deadline:
                time.sleep(0.005)
            self.late += not self._echo_ready(t)
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
    gate = node_process('voice_gate_node', params={'autostart': True, 'wake.engine': 'none'})
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
        assert not ints, (f'false barge-in on own echo: {ints} (sim missed {mic.gaps} refs, '
                          f'{mic.late} mic frames made without their late reference)\n'
                          f'{gate.log()[-3000:]}')
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
        # (interrupt, playback events and voice activity are separate topics: any order)
        probe.wait_for(lambda: any(a.event == VoiceActivity.BARGE_IN for a in acts), 3,
                       'BARGE_IN activity', procs)
        barge = [a for a in acts if a.event == VoiceActivity.BARGE_IN]
        assert len(barge) == 1, (
            [(a.event, a.turn_id, a.header.stamp.sec % 100 + a.header.stamp.nanosec / 1e9,
              a.reason) for a in acts], gate.log()[-3000:])
        # the user's words become the next turn
        probe.wait_for(lambda: any(u.turn_id == barge[0].turn_id and u.is_final for u in utts),
                       6, 'barge-in turn final utterance', procs)
    finally:
        mic.stop.set()
        mic.thread.join(2)
    assert gate.alive() and player.alive()


def _write_bag(path, audio16k: np.ndarray, start_ns: int):
    """An mcap rosbag2 of 32 ms AudioFrames on /audio/in."""
    from wallie_cli.bag_files import write_audio_bag
    return write_audio_bag(path, audio16k, 16000, 32, start_ns=start_ns)


def test_capture_replays_a_bag_with_its_original_timing(probe, node_process, tmp_path):
    AudioFrame = _msgs()[0]
    from wallie_common import timeutil
    from wallie_common.conversions import frame_to_audio
    from wallie_common.qos import AUDIO_QOS
    n = 63 * 512                                            # 2.016 s, whole 32 ms frames
    t = np.arange(n) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(t * 3))).astype(np.float32) / 2
    bag = _write_bag(tmp_path / 'mic_bag', audio, start_ns=1_600_000_000 * NS)
    got: list = []
    sub = probe.node.create_subscription(AudioFrame, 'audio/in',
                                         lambda m: got.append((time.monotonic(), m)), AUDIO_QOS)
    cap = node_process('capture_node', params={
        'source': 'bag', 'bag.path': str(bag), 'bag.realtime': True})
    # replay starts at activation: make sure the probe hears it from the first frame
    assert probe.lifecycle('capture', 'configure')
    probe.wait_for(lambda: sub.get_publisher_count() == 1, 10, 'capture publisher', [cap])
    time.sleep(0.3)
    assert probe.lifecycle('capture', 'activate')
    probe.wait_for(lambda: len(got) >= 63 or not cap.alive(), 10, 'replayed frames', [cap])
    time.sleep(0.3)
    assert cap.alive()
    assert len(got) == 63, f'{len(got)} frames (best effort: none should drop on localhost)'
    arrivals = np.array([a for a, _ in got])
    msgs = [m for _, m in got]
    # the recorded spacing: 32 ms apart in real time, the whole bag in ~2 s
    span = arrivals[-1] - arrivals[0]
    assert 62 * 0.032 - 0.15 <= span <= 62 * 0.032 + 0.3, span
    assert np.median(np.diff(arrivals)) == pytest.approx(0.032, abs=0.008)
    # stamps: the recording's, moved onto the live clock (within the replay's start)
    stamps = np.array([timeutil.from_msg(m.header.stamp) for m in msgs])
    assert set(np.diff(stamps)) == {32_000_000}
    assert abs(stamps[0] - time.time_ns()) < 10 * NS
    # the samples are the bag's, in order
    out = np.concatenate([frame_to_audio(m).mono for m in msgs])
    assert np.max(np.abs(out - audio)) < 1e-4


def test_push_to_talk_and_listen_action(probe, node_process):
    _, _, _, _, UtteranceAudio, VoiceActivity, WakeWord = _msgs()
    from rclpy.action import ActionClient
    from std_srvs.srv import SetBool

    from wallie_common.qos import UTTERANCE_QOS
    from wallie_interfaces.action import Listen
    from wallie_interfaces.msg import Transcript
    acts = probe.subscribe('voice/activity', VoiceActivity)
    wakes = probe.subscribe('voice/wake', WakeWord)
    utts = probe.subscribe('voice/utterance', UtteranceAudio, UTTERANCE_QOS)
    asr = probe.publisher('transcript', Transcript)
    # an acoustic wake word is configured: only push-to-talk / listen can open these turns
    gate = node_process('voice_gate_node', params={
        'autostart': True, 'wake.engine': 'openwakeword', 'wake.followup_ms': 0,
        'endpoint.min_silence_ms': 2000})
    probe.wait_for_topic('voice/activity', procs=[gate])
    q = F.synth('what is the capital of france')
    q = q * (0.5 / float(np.max(np.abs(q))))
    dur = q.shape[0] / 16000
    mic = MicSim(probe)
    mic.thread.start()

    def event(kind, tid):
        return [a for a in acts if a.event == kind and a.turn_id == tid]
    try:
        # -- push-to-talk: press -> a turn without the wake word; release ends it at once
        res = probe.call(SetBool, 'push_to_talk', SetBool.Request(data=True))
        assert res.success and res.message, res.message
        tid = res.message
        mic.say(q, time.time_ns() + 200_000_000)
        probe.wait_for(lambda: event(VoiceActivity.SPEECH_START, tid), dur + 3,
                       'SPEECH_START in the push-to-talk turn', [gate])
        time.sleep(max(0.0, dur - 0.2) + 0.5)                 # speech over, 2 s silence not
        released = time.monotonic()
        res = probe.call(SetBool, 'push_to_talk', SetBool.Request(data=False))
        assert res.success and res.message == tid
        probe.wait_for(lambda: event(VoiceActivity.END_OF_TURN, tid), 1.2,
                       'END_OF_TURN right after the release (not after 2 s silence)', [gate])
        assert time.monotonic() - released < 1.2
        assert any(u.turn_id == tid and u.is_final and not u.discarded for u in utts)
        assert not [w for w in wakes if w.engine == 'openwakeword']

        # -- listen action: opens the mic, returns the final transcript of that turn
        ok = probe.set_params('voice_gate', **{'endpoint.min_silence_ms': 400})
        assert ok[0].successful
        client = ActionClient(probe.node, Listen, 'listen')
        assert client.wait_for_server(timeout_sec=10)
        feedback: list = []
        n_wakes = len(wakes)
        fut = client.send_goal_async(Listen.Goal(timeout_s=10.0, require_wake=False),
                                     feedback_callback=lambda f: feedback.append(
                                         f.feedback.partial))
        probe.wait_for(fut.done, 5, 'listen goal response', [gate])
        handle = fut.result()
        assert handle.accepted
        result = handle.get_result_async()
        probe.wait_for(lambda: len(wakes) > n_wakes, 3, 'listen turn opened', [gate])
        ltid = wakes[-1].turn_id
        assert wakes[-1].engine == 'service' and ltid != tid
        mic.say(q, time.time_ns() + 200_000_000)
        probe.wait_for(lambda: any(u.turn_id == ltid and u.is_final for u in utts), dur + 4,
                       'final utterance of the listen turn', [gate])
        # play the ASR: a partial (-> action feedback), then the final
        asr.publish(Transcript(turn_id=ltid, text='what is the', is_final=False))
        probe.wait_for(lambda: feedback, 3, 'listen feedback', [gate])
        asr.publish(Transcript(turn_id=ltid, text='what is the capital of france',
                               is_final=True))
        probe.wait_for(result.done, 5, 'listen result', [gate])
        r = result.result().result
        assert r.error_code == Listen.Result.SUCCESS, r.error_message
        assert (r.text, r.turn_id) == ('what is the capital of france', ltid)
        assert feedback == ['what is the']

        # -- listen with nobody speaking times out with a reason
        fut = client.send_goal_async(Listen.Goal(timeout_s=1.0, require_wake=False))
        probe.wait_for(fut.done, 5, 'listen goal response', [gate])
        result = fut.result().get_result_async()
        probe.wait_for(result.done, 5, 'listen timeout', [gate])
        r = result.result().result
        assert r.error_code == Listen.Result.TIMEOUT and 'no final transcript' in r.error_message
    finally:
        mic.stop.set()
        mic.thread.join(2)
    assert gate.alive()


def test_lifecycle_loop_then_a_good_turn(probe, node_process, tmp_path):
    AudioFrame, _, PlaybackEvent, _, UtteranceAudio, VoiceActivity, _ = _msgs()
    from wallie_common.qos import REPLY_AUDIO_QOS, UTTERANCE_QOS
    sc = F.scene([('silence', 0.3), ('speech', ('set a timer for ten minutes', 'en-us')),
                  ('silence', 1.2)], noise_db=-55)
    wav = sc.write(tmp_path / 'turn.wav')
    acts = probe.subscribe('voice/activity', VoiceActivity)
    utts = probe.subscribe('voice/utterance', UtteranceAudio, UTTERANCE_QOS)
    events = probe.subscribe('playback/events', PlaybackEvent)
    out = probe.publisher('audio/out', AudioFrame, REPLY_AUDIO_QOS)
    gate = node_process('voice_gate_node', params={'wake.engine': 'none'})
    player = node_process('player_node', params={'sink': 'null'})
    cap = node_process('capture_node', params={
        'source': 'file', 'file.path': str(wav), 'file.realtime': True,
        'file.lead_silence_s': 2.0})
    procs = [gate, player, cap]
    names = ('voice_gate', 'player', 'capture')
    for name in names:
        probe.activate(name)
    for _ in range(2):
        for name in names:
            for step in ('deactivate', 'cleanup', 'configure', 'activate'):
                assert probe.lifecycle(name, step), f'{name}: {step} failed'
    assert [probe.lifecycle_state(n) for n in names] == ['active'] * 3
    # one publisher / subscription per topic, as after a single configure
    want_pubs = {'/audio/in': 1, '/voice/activity': 1, '/voice/utterance': 1,
                 '/interrupt': 1, '/audio/playback': 1, '/playback/events': 1}
    want_subs = {'/audio/in': 1, '/audio/playback': 1, '/transcript': 1, '/audio/out': 1,
                 '/playback/events': 1, '/interrupt': 1}
    probe_subs = {'/playback/events': 1}          # the probe's own subscription
    node = probe.node

    def counts():
        return ({t: node.count_publishers(t) for t in want_pubs},
                {t: node.count_subscribers(t) - probe_subs.get(t, 0) for t in want_subs})
    probe.wait_for(lambda: counts() == (want_pubs, want_subs), 10,
                   f'entity counts {want_pubs} {want_subs}', procs)
    # ... and a good turn still works, once
    probe.wait_for(lambda: any(a.event == VoiceActivity.END_OF_TURN for a in acts),
                   2.0 + sc.duration_s + 10, 'END_OF_TURN after the lifecycle loop', procs)
    time.sleep(0.3)
    kinds = [a.event for a in acts]
    assert kinds.count(VoiceActivity.SPEECH_START) == 1
    assert kinds.count(VoiceActivity.END_OF_TURN) == 1, kinds
    tid = [a for a in acts if a.event == VoiceActivity.END_OF_TURN][0].turn_id
    pieces = sorted((u for u in utts if u.turn_id == tid), key=lambda u: u.seq)
    assert [p.seq for p in pieces] == list(range(len(pieces))) and pieces[-1].is_final
    # the player plays a reply exactly once (a duplicate subscription would double it)
    _publish_reply(out, 'after_loop', np.full(22050, 0.1, np.float32))
    probe.wait_for(lambda: any(e.event == PlaybackEvent.FINISHED for e in events), 6,
                   'reply FINISHED', procs)
    time.sleep(0.2)
    fin = [e for e in events if e.event == PlaybackEvent.FINISHED]
    assert len(fin) == 1 and abs(fin[0].played_s - 1.0) < 0.1, fin
    assert all(p.alive() for p in procs)
