"""Graph test: the real `asr_node` process with the real tiny.en model over DDS.

The test plays the voice gate: it streams committed espeak-ng questions (3 voices) as
UtteranceAudio pieces with VoiceActivity events, and checks partials, early finals, finals
(speech_end carried), WER, no transcript from non-speech, the transcribe service, bad input
and a live model reload.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray

from wallie_asr.config import SAMPLE_RATE
from wallie_asr.fixtures import nonspeech_clips, normalize_for_wer, speech_clips, wer
from wallie_common import timeutil
from wallie_common.qos import UTTERANCE_QOS
from wallie_interfaces.msg import StageStamp, Transcript, UtteranceAudio, VoiceActivity
from wallie_interfaces.srv import Transcribe
from wallie_testing.harness import NodeProcess, Probe

WER_BOUND = 0.15      # measured 0.06 on these 24 clips with tiny.en int8, 15 s window
PIECE_S = 0.1
ENDPOINT_SILENCE_S = 0.3


class Graph:
    def __init__(self) -> None:
        self.proc = NodeProcess('asr_node', params={'autostart': True, 'asr.cpu_threads': 2})
        self.probe = Probe('asr_test_probe')
        self.transcripts = self.probe.subscribe('transcript', Transcript)
        self.stamps = self.probe.subscribe('metrics/stamps', StageStamp)
        self.diags = self.probe.subscribe('/diagnostics', DiagnosticArray)
        self.utt = self.probe.publisher('voice/utterance', UtteranceAudio, UTTERANCE_QOS)
        self.act = self.probe.publisher('voice/activity', VoiceActivity)
        self.probe.wait_for_subscribers(self.utt, timeout=60, procs=[self.proc])
        self.probe.wait_for_subscribers(self.act, timeout=30, procs=[self.proc])
        self.probe.wait_for(lambda: self.probe.lifecycle_state('asr') == 'active', 60,
                            'asr active', [self.proc])
        self.n = 0

    def piece(self, turn, seq, audio, start_ns, final=False, speech_end_ns=0, rate=SAMPLE_RATE):
        msg = UtteranceAudio(turn_id=turn, seq=seq, sample_rate=rate, is_final=final)
        msg.header.stamp = timeutil.to_msg(start_ns)
        msg.samples = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tolist()
        if speech_end_ns:
            msg.speech_end = timeutil.to_msg(speech_end_ns)
        self.utt.publish(msg)

    def activity(self, turn, event, speech_end_ns=0):
        msg = VoiceActivity(event=event, turn_id=turn)
        msg.header.stamp = timeutil.to_msg(timeutil.now_ns())
        if speech_end_ns:
            msg.speech_end = timeutil.to_msg(speech_end_ns)
        self.act.publish(msg)

    def turn(self, audio, speech_end_s, realtime=False, timeout=20.0):
        """Stream one turn like the voice gate; return (turn_id, messages of the turn)."""
        self.n += 1
        turn = f'turn{self.n}-{time.monotonic_ns()}'
        t0 = timeutil.now_ns()
        step = int(PIECE_S * SAMPLE_RATE)
        speech_end_ns = t0 + int(speech_end_s * 1e9)
        end = min(audio.size, int(speech_end_s * SAMPLE_RATE) + step)
        seq = 0
        for i in range(0, end, step):
            self.piece(turn, seq, audio[i:i + step], t0 + int(i / SAMPLE_RATE * 1e9))
            seq += 1
            if realtime:
                time.sleep(PIECE_S)
        self.activity(turn, VoiceActivity.SPEECH_PROBABLY_ENDED, speech_end_ns)
        tail = np.concatenate([audio[end:], np.zeros(int(ENDPOINT_SILENCE_S * SAMPLE_RATE))])
        for i in range(0, tail.size - step + 1, step):
            self.piece(turn, seq, tail[i:i + step], t0 + int((end + i) / SAMPLE_RATE * 1e9))
            seq += 1
            time.sleep(PIECE_S if realtime else 0.0)
        self.activity(turn, VoiceActivity.END_OF_TURN, speech_end_ns)
        self.piece(turn, seq, np.zeros(0), t0 + int((end + tail.size) / SAMPLE_RATE * 1e9),
                   final=True, speech_end_ns=speech_end_ns)
        self.probe.wait_for(lambda: any(m.turn_id == turn and m.is_final
                                        for m in list(self.transcripts)),
                            timeout, f'final transcript of {turn}', [self.proc])
        return turn, [m for m in list(self.transcripts) if m.turn_id == turn], speech_end_ns

    def close(self) -> None:
        self.probe.close()
        code = self.proc.stop()
        assert code == 0, f'asr_node exit code {code}\n{self.proc.log()[-3000:]}'


@pytest.fixture(scope='module')
def graph(ros_env):
    g = Graph()
    yield g
    g.close()


def test_realtime_turns_give_partials_early_final_and_final(graph):
    clips = {c.id: c for c in speech_clips()}
    for cid in ('weather_us', 'rainbow_usm'):
        clip = clips[cid]
        turn, msgs, speech_end_ns = graph.turn(clip.audio, clip.speech_end_s, realtime=True)
        partials = [m for m in msgs if not m.is_final and not m.is_early_final]
        early = [m for m in msgs if m.is_early_final]
        final = [m for m in msgs if m.is_final]
        assert partials and all(m.text for m in partials), msgs
        assert len(early) == 1 and len(final) == 1
        assert msgs.index(final[0]) == len(msgs) - 1       # the final comes last
        assert final[0].text == early[0].text               # reused: no new speech came
        assert timeutil.from_msg(final[0].speech_end) == speech_end_ns
        assert final[0].language == 'en' and 0.3 < final[0].confidence <= 1.0
        assert wer([clip.text], [final[0].text]) <= 0.25, final[0].text
        graph.probe.wait_for(lambda: {s.stage for s in list(graph.stamps) if s.turn_id == turn}
                             >= {'asr_first_partial', 'asr_final'}, 5, 'stamps')


def test_wer_over_all_voices(graph):
    refs, hyps = [], []
    for clip in speech_clips():
        _, msgs, _ = graph.turn(clip.audio, clip.speech_end_s)
        refs.append(clip.text)
        hyps.append([m for m in msgs if m.is_final][0].text)
    score = wer(refs, hyps)
    print(f'WER over {len(refs)} clips: {score:.3f}')
    assert score <= WER_BOUND, list(zip(refs, hyps))


def test_nonspeech_gives_no_transcript(graph):
    for clip in nonspeech_clips():
        _, msgs, _ = graph.turn(clip.audio, clip.duration_s, realtime=clip.id == 'tones_melody')
        assert all(m.text == '' for m in msgs), (clip.id, [m.text for m in msgs])
        assert [m.is_final for m in msgs] == [True]         # one empty final ends the turn


def test_transcribe_service(graph):
    clip = next(c for c in speech_clips() if c.id == 'capital_gbf')
    req = Transcribe.Request(sample_rate=SAMPLE_RATE,
                             samples=(clip.audio * 32767).astype(np.int16).tolist())
    res = graph.probe.call(Transcribe, 'transcribe', req)
    assert res.success and normalize_for_wer(res.text) == 'what is the capital of france'
    # 48 kHz input is resampled
    audio48 = np.interp(np.arange(clip.audio.size * 3) / 3, np.arange(clip.audio.size),
                        clip.audio)
    req = Transcribe.Request(sample_rate=48000,
                             samples=(audio48 * 32767).astype(np.int16).tolist())
    res = graph.probe.call(Transcribe, 'transcribe', req)
    assert res.success and 'capital' in res.text.lower()
    res = graph.probe.call(Transcribe, 'transcribe', Transcribe.Request())
    assert not res.success and 'empty' in res.message
    res = graph.probe.call(Transcribe, 'transcribe',
                           Transcribe.Request(samples=np.zeros(16000, np.int16).tolist()))
    assert res.success and res.text == '' and res.message == 'silence'


def _diag_values(graph) -> dict[str, str]:
    for arr in reversed(list(graph.diags)):
        for st in arr.status:
            if st.name.endswith('asr'):
                return {kv.key: kv.value for kv in st.values} | {'_message': st.message}
    return {}


def test_bad_input_then_live_reload(graph):
    t0 = timeutil.now_ns()
    graph.piece('bad-rate', 0, np.ones(1600) * 0.1, t0, rate=5)          # sample rate 5 Hz
    graph.piece('huge', 0, np.zeros(40 * SAMPLE_RATE), t0)               # 40 s in one piece
    graph.activity('never-seen', VoiceActivity.SPEECH_PROBABLY_ENDED)    # unknown turn
    graph.probe.wait_for(lambda: int(_diag_values(graph).get('count.bad_input', 0)) >= 2
                         and int(_diag_values(graph).get('count.unknown_turn', 0)) >= 1,
                         10, 'bad input counted in diagnostics', [graph.proc])
    assert graph.proc.alive()
    # invalid values are rejected with a reason
    res = graph.probe.set_params('asr', **{'asr.compute_type': 'int3'})
    assert not res[0].successful and 'int3' in res[0].reason
    # a reload in the background, then the next turn runs on the new model
    res = graph.probe.set_params('asr', **{'asr.compute_type': 'float32'})
    assert res[0].successful
    graph.probe.wait_for(lambda: _diag_values(graph).get('compute_type') == 'float32'
                         and _diag_values(graph).get('_message') == 'ready', 60,
                         'reload to float32', [graph.proc])
    clip = next(c for c in speech_clips() if c.id == 'timer_us')
    _, msgs, _ = graph.turn(clip.audio, clip.speech_end_s)
    assert normalize_for_wer(msgs[-1].text) == 'set a timer for ten minutes'


def test_cleanup_releases_and_reconfigure_works(graph):
    assert graph.probe.lifecycle('asr', 'deactivate')
    assert graph.probe.lifecycle('asr', 'cleanup')
    graph.probe.wait_for(lambda: _diag_values(graph).get('_message') == 'unconfigured', 10,
                         'unconfigured', [graph.proc])
    graph.probe.activate('asr')
    clip = next(c for c in speech_clips() if c.id == 'lights_gbf')
    _, msgs, _ = graph.turn(clip.audio, clip.speech_end_s)
    assert normalize_for_wer(msgs[-1].text) == 'turn on the lights'
