"""The turn joiner (pure Python): when a turn is complete and what its durations are."""

import json
import math

import pytest

from wallie_manager import turn_metrics as tm
from wallie_manager.jsonl_log import encode

MS = 1_000_000
T0 = 1_700_000_000 * 10**9
FULL = {  # stage -> ms after the acoustic end of speech
    tm.SPEECH_END: 0, tm.ENDPOINT: 300, tm.ASR_FIRST_PARTIAL: -500, tm.ASR_FINAL: 420,
    tm.LLM_FIRST_TOKEN: 520, tm.FIRST_CHUNK: 600, tm.LLM_DONE: 900, tm.TTS_FIRST_AUDIO: 680,
    tm.FIRST_AUDIBLE: 710,
}


def feed(joiner, turn_id, stages, now=0.0):
    for stage, ms in stages.items():
        assert joiner.add_stamp(turn_id, stage, T0 + ms * MS, 'n', now).accepted


def test_complete_turn_on_finished_event():
    j = tm.TurnJoiner(tm.JoinerConfig(settle_s=0.3))
    feed(j, 't1', FULL)
    assert j.due(100.0) == []                       # audible, still playing: not done
    assert j.playback_event('t1', 'finished', 1.0)
    assert j.due(1.1) == []                          # settle time for racing stamps
    done, = j.due(1.31)
    assert done.outcome == tm.OUTCOME_ANSWERED and not done.interrupted
    d = done.durations
    assert d['endpoint_ms'] == pytest.approx(300)
    assert d['asr_ms'] == pytest.approx(120)
    assert d['llm_first_chunk_ms'] == pytest.approx(180)
    assert d['tts_first_audio_ms'] == pytest.approx(80)
    assert d['playout_ms'] == pytest.approx(30)
    assert d['e2e_ms'] == pytest.approx(710)
    assert d['e2e_from_endpoint_ms'] == pytest.approx(410)
    assert d['llm_first_token_ms'] == pytest.approx(100)
    assert math.isnan(d['flush_ms'])
    assert j.open_count == 0
    # a late stamp never opens a second record
    assert not j.add_stamp('t1', tm.LLM_DONE, T0, 'n', 2.0).accepted
    assert j.due(1000.0) == []


def test_interrupted_after_audible():
    j = tm.TurnJoiner(tm.JoinerConfig(settle_s=0.0))
    feed(j, 't2', FULL)
    feed(j, 't2', {tm.INTERRUPT: 2000, tm.FLUSHED: 2030}, now=5.0)
    done, = j.due(5.0)
    assert done.interrupted and done.outcome == tm.OUTCOME_INTERRUPTED
    assert done.durations['flush_ms'] == pytest.approx(30)
    assert done.reason == 'flushed'


def test_interrupt_before_audible_completes_after_grace():
    j = tm.TurnJoiner(tm.JoinerConfig(interrupt_grace_s=2.0))
    feed(j, 't3', {tm.SPEECH_END: 0, tm.ENDPOINT: 300, tm.INTERRUPT: 400}, now=1.0)
    assert j.due(2.9) == []
    done, = j.due(3.01)
    assert done.interrupted and done.reason == 'interrupt'
    assert math.isnan(done.durations['e2e_ms'])


def test_flushed_event_supplies_flush_time_and_first_audible():
    j = tm.TurnJoiner(tm.JoinerConfig(settle_s=0.0))
    feed(j, 't4', {tm.SPEECH_END: 0, tm.INTERRUPT: 900})
    j.playback_event('t4', 'flushed', 1.0, first_audible_ns=T0 + 700 * MS, flush_ms=25.0)
    done, = j.due(1.0)
    assert done.durations['flush_ms'] == 25.0
    assert done.durations['e2e_ms'] == pytest.approx(700)


def test_unanswered_turn_times_out_and_audible_turn_waits_longer():
    j = tm.TurnJoiner(tm.JoinerConfig(turn_timeout_s=10, playback_timeout_s=60))
    feed(j, 'quiet', {tm.SPEECH_END: 0, tm.ENDPOINT: 300, tm.ASR_FINAL: 400})
    feed(j, 'long', FULL)
    done = j.due(10.5)
    assert [t.turn_id for t in done] == ['quiet']
    assert done[0].outcome == tm.OUTCOME_UNANSWERED and done[0].reason == 'timeout'
    assert j.due(59.0) == []
    assert [t.turn_id for t in j.due(60.5)] == ['long']


def test_discarded_turn_is_forgotten():
    j = tm.TurnJoiner()
    feed(j, 'd', {tm.SPEECH_END: 0})
    assert j.discard('d')
    assert j.due(1e6) == []
    assert not j.add_stamp('d', tm.ENDPOINT, T0, 'n', 1.0).accepted


def test_open_turns_are_bounded():
    j = tm.TurnJoiner(tm.JoinerConfig(max_open_turns=10, remember_done=5))
    for i in range(1000):
        j.add_stamp(f'flood-{i}', tm.SPEECH_END, T0, 'n', 0.0)
    assert j.open_count == 10 and j.evicted == 990
    assert len(j._done) == 5


def test_duplicates_keep_the_first_stamp():
    j = tm.TurnJoiner(tm.JoinerConfig(settle_s=0))
    feed(j, 'x', {tm.SPEECH_END: 0, tm.FIRST_AUDIBLE: 500})
    assert j.add_stamp('x', tm.FIRST_AUDIBLE, T0 + 900 * MS, 'n', 0.0).duplicate
    j.playback_event('x', 'finished', 0.0)
    done, = j.due(0.0)
    assert done.durations['e2e_ms'] == pytest.approx(500)


@pytest.mark.parametrize('turn_id,ok', [
    ('abc-123', True), ('', False), ('x' * 129, False), ('a\x00b', False), ('tü', True)])
def test_turn_id_check(turn_id, ok):
    assert (tm.check_turn_id(turn_id) is None) is ok


@pytest.mark.parametrize('stage,offset_s,ok', [
    ('asr_final', 0, True), ('bogus', 0, False), ('asr_final', -3 * 86400, False),
    ('endpoint', 3 * 86400, False)])
def test_stamp_check(stage, offset_s, ok):
    now = T0
    stamp = now + offset_s * 10**9
    assert (tm.check_stamp(stage, stamp, now) is None) is ok
    assert tm.check_stamp('asr', 0, now) is not None


def test_turn_log_record_has_no_text_and_is_valid_json():
    j = tm.TurnJoiner(tm.JoinerConfig(settle_s=0))
    feed(j, 'secret', {tm.SPEECH_END: 0})
    j.add_text('secret', 'transcript', 'my bank password is 1234', 0.0)
    j.add_text('secret', 'reply', 'Noted.', 0.0)
    j.playback_event('secret', 'finished', 0.0)
    done, = j.due(0.0)
    assert done.transcript == 'my bank password is 1234' and done.reply == 'Noted.'
    line = encode(done.log_record())
    assert 'password' not in line and 'Noted' not in line
    rec = json.loads(line)
    assert rec['stage'] == 'turn' and rec['e2e_ms'] is None   # NaN -> null, not NaN


def test_every_stamp_has_a_component():
    assert set(tm.COMPONENT) == set(tm.STAGES)
    assert {'vad', 'asr', 'llm', 'tts', 'player'} <= set(tm.COMPONENT.values())


def test_a_turn_not_answered_because_it_was_not_heard_keeps_its_reason():
    j = tm.TurnJoiner(tm.JoinerConfig(settle_s=0.0))
    j.mark_not_heard('t9', 'low_logprob', 0.0)          # the final may come before stamps
    feed(j, 't9', FULL)                                 # "Sorry, I didn't catch that." played
    j.playback_event('t9', 'finished', 1.0)
    done, = j.due(1.0)
    assert done.outcome == tm.OUTCOME_NOT_HEARD and done.not_heard == 'low_logprob'
    rec = json.loads(encode(done.log_record()))
    assert rec['outcome'] == 'not_heard' and rec['not_heard'] == 'low_logprob'
    # an ordinary answered turn has no such field
    feed(j, 't10', FULL)
    j.playback_event('t10', 'finished', 2.0)
    done, = j.due(2.0)
    assert done.outcome == tm.OUTCOME_ANSWERED and 'not_heard' not in done.log_record()
