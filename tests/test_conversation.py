"""The conversation suite: the whole graph as real processes with the real CPU models.

One graph (voice gate, ASR, LLM, TTS, player, manager, metrics; the same bring-up as
`wallie up`) is shared by every test of this module, and so is its microphone: this process
plays a simulated room microphone into audio/in in real time (`echo_mic.EchoMic`) that hears
Wallie's own voice (the player's output through an echo path: 60 ms, -6 dB, plus a
reflection), a noise floor, and the user: the committed fixture recordings
(wallie_cli's bench fixtures, with their ground truth) are mixed in. The player writes a
WAV file; every
answer is transcribed back with the project's own ASR engine and must contain the fact.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from wallie_cli import e2e, fixture_set, turn_result, wavs
from wallie_llm.config import NOT_HEARD_REPLY
from wallie_llm.reply import heard_text
from wallie_testing import echo_mic

FIXTURES = fixture_set.default_fixtures_dir()
pytestmark = [pytest.mark.slow]
FLUSH_BOUND_MS = 50.0           # the player's flush target (issue 3)
FACT_BOUND = 1 / 2              # share of spoken answers that must contain the fact
ANSWERS: dict[str, tuple[str, str, bool]] = {}   # fixture -> (heard question, answer, right)
ECHO_TURNS: list[tuple[str, str]] = []           # (fixture, transcript) of extra turns
LLM_STOP_GRACE_S = 0.5          # "stops within a token": no new chunk after this


def _fixtures(set_name: str) -> list[dict]:
    if FIXTURES is None:
        return []
    return [f for f in fixture_set.load_manifest(FIXTURES) if f['set'] == set_name]


def _pick(what: str, **match) -> dict:
    """The first fixture whose sidecar fields have the given values."""
    for f in fixture_set.load_manifest(FIXTURES):
        if all(f.get(k) == v for k, v in match.items()):
            return f
    pytest.skip(f'no fixture for {what} ({match}) in {FIXTURES}/manifest.json')


@pytest.fixture(scope='module')
def graph(ros_env, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp('graph')
    options = e2e.GraphOptions(
        profile='cpu', capture='skip', sink='file', wake_engine='none', user_config=False,
        run_dir=str(run_dir), domain_id=None,   # a free private domain
        home=str(tmp_path_factory.mktemp('home')),
        params={'llm': {'llm.temperature': 0.0}})
    g = e2e.LiveGraph(options)
    try:
        g.start()
    except wavs.GraphError as exc:
        if 'wallie models fetch' in str(exc):
            pytest.skip(str(exc))
        raise
    try:
        g.wait_ready(300)
        yield g
    finally:
        codes = g.stop()
    bad = {n: c for n, c in codes.items() if c not in (0, None, -2)}
    assert not bad, f'unclean exits: {bad}\n{g.logs_report(bad)}'


@pytest.fixture(scope='module')
def asr():
    from wallie_asr.config import EngineConfig
    from wallie_asr.engine import WhisperEngine
    engine = WhisperEngine(EngineConfig(model='whisper-tiny.en', device='cpu',
                                        compute_type='int8', cpu_threads=2))
    engine.load()
    yield engine
    engine.close()


@pytest.fixture(scope='module')
def mic(graph):
    """The room microphone: continuous, hears the player (echo) and the user."""
    m = echo_mic.EchoMic(graph.observer, delay_ms=60.0, gain=0.5).start()
    time.sleep(0.5)
    yield m
    m.close()


@pytest.fixture(autouse=True)
def settled(graph, mic):
    """Every test starts with Wallie idle: no reply of an earlier test still playing."""
    assert graph.wait_idle(60), 'the graph did not settle'
    yield


def heard(asr, turn: turn_result.TurnResult) -> str:
    """What the user heard: the reply audio the player wrote, transcribed by our ASR."""
    assert turn.answer is not None and turn.answer.size, 'the player wrote no audio'
    assert turn.answer_rate == 16000, turn.answer_rate
    return asr.transcribe(turn.answer.astype(np.float32) / 32768.0).text


def explain(graph: e2e.LiveGraph, turn: turn_result.TurnResult) -> str:
    rec = turn.record
    return (f'turn={turn.turn_id!r} transcript={turn.transcript!r} reply={turn.reply_text!r} '
            f'activity={[a["event"] for a in rec.activity] if rec else None} '
            f'playback={list(rec.playback) if rec else None} '
            f'other turns={[(t.turn_id, t.transcript) for t in turn.other_turns]}\n'
            + graph.logs_report(['voice_gate', 'asr', 'llm', 'tts', 'player'], 1500))


def test_barge_in_stops_the_reply_but_own_echo_does_not(graph, mic):
    from wallie_cli import bag_files
    from wallie_testing.stages import speech_16k
    obs = graph.observer
    question = speech_16k('Tell me about the history of Rome.')     # a few sentences
    # the user speaks with an espeak-ng voice, Wallie with Piper's joe
    user_fx = next((f for f in _fixtures('questions') if f['noise'] is None and
                    f['reverb'] is None and f['voice']['engine'] == 'espeak-ng'), None)
    if user_fx is None:
        pytest.skip('no clean espeak-ng question among the fixtures')
    user = bag_files.read_audio_bag(user_fx['bag_path']).samples
    refs = mic.ref_frames
    # 1) Wallie's whole reply, heard back through the echo path, must not interrupt it.
    obs.reset_conversation()
    since = time.time_ns()
    echo_turn = graph.wait_turn(since, mic.say(question), timeout=90)
    assert echo_turn.answered, explain(graph, echo_turn)
    rec = echo_turn.record
    late = mic.ref_lateness_ms[-2000:] or [0.0]
    assert 'finished' in rec.playback, (
        f'own echo cut the reply (simulated mic: {mic.late_frames} frames made without '
        f'their reference, reference up to {max(late):.0f} ms late): '
        f'{explain(graph, echo_turn)}')
    assert not rec.interrupts and not rec.events('BARGE_IN'), explain(graph, echo_turn)
    assert mic.ref_frames > refs, 'the simulated microphone never heard the player'
    # 2) The user talks over the next reply: interrupt, flush, LLM stops, history trimmed.
    #    A reply that ends before the user's words arrive, whose generated part had all
    #    been heard when the words arrived (nothing to trim), or that was the "didn't catch
    #    that" refusal (never in the history), is asked again, up to 4 times.
    turn_a = None
    heard = ''
    for _attempt in range(4):
        assert graph.wait_idle(60), 'the graph did not settle'
        obs.reset_conversation()
        since = time.time_ns()
        mic.say(question)
        turn_a = obs.wait(lambda: next((t for t in obs.turns_since(since) if t.audible),
                                       None), 60)
        assert turn_a, 'no reply became audible'
        t_user = time.time_ns() + 300_000_000
        mic.say(user, t_user)
        obs.wait(lambda: turn_a.playback_over, 30)
        if not turn_a.interrupted:
            continue
        obs.wait(lambda: 'flushed' in turn_a.playback, 5)
        obs.wait(lambda: turn_a.reply_done, 5)
        if turn_a.reply_text.strip() == NOT_HEARD_REPLY:
            continue        # the ASR's transcript was refused: no answer in the history to trim
        f = turn_a.playback.get('flushed')
        if f is None:
            break               # asserted below
        heard = heard_text(turn_a.reply_chunks, f['segments_complete'], f['segment_fraction'])
        if heard != turn_a.reply_text:
            break
    assert turn_a is not None and turn_a.interrupts, \
        f'no interrupt: {explain(graph, turn_result.TurnResult(turn_a, None))}'
    assert turn_a.interrupts[0]['reason'] == 'BARGE_IN'
    assert 'flushed' in turn_a.playback, 'the player did not flush'
    assert 'finished' not in turn_a.playback
    flushed = turn_a.playback['flushed']
    assert flushed['flush_ms'] < FLUSH_BOUND_MS, flushed
    audible = turn_a.playback['first_audible']['first_audible_ns']
    assert flushed['played_s'] < (flushed['stamp_ns'] - audible) / 1e9 + 0.2, flushed
    assert flushed['played_s'] >= (t_user - audible) / 1e9 - 0.1, flushed
    t_int = turn_a.interrupts[0]['recv_ns']
    late = [c for c in turn_a.chunks if c['text'] and
            c['recv_ns'] > t_int + LLM_STOP_GRACE_S * 1e9]
    assert not late, f'the LLM kept generating after the interrupt: {late}'
    # the history holds exactly what the player reports as heard, and less than was written
    full = turn_a.reply_text
    assert heard and heard != full, \
        f'every interrupt came after the whole generated reply was heard: {flushed}, {full!r}'

    def kept_text() -> str | None:
        entry = next((h for h in obs.history_turns() if h['turn_id'] == turn_a.turn_id),
                     None)
        return entry['assistant'] if entry else None
    obs.wait(lambda: kept_text() == heard, 10)
    kept = kept_text()
    assert kept is not None, f'turn {turn_a.turn_id} not in the history: ' \
        f'{obs.history_turns()}'
    assert kept == heard and len(kept) < len(full), (kept, heard, full, flushed)
    words = fixture_set.words
    assert words(kept.replace('...', ' '))[:2] == words(full)[:2], (kept, full)
    # the user's words are the next turn, and it is answered
    turn_b = obs.wait(lambda: next((t for t in obs.turns_since(since)
                                    if t is not turn_a and t.playback_over), None), 60)
    assert turn_b, 'the barge-in utterance was not answered'
    said = set(fixture_set.words(user_fx['text']))
    got = said & set(fixture_set.words(turn_b.transcript))
    assert len(got) >= len(said) / 2, (user_fx['text'], turn_b.transcript)
    print(f'\nbarge-in: flushed in {flushed["flush_ms"]:.1f} ms after '
          f'{flushed["played_s"]:.2f} s of {full!r}; history keeps {kept!r}; next turn '
          f'{turn_b.transcript!r} -> {turn_b.reply_text!r}; reference up to '
          f'{max(mic.ref_lateness_ms or [0.0]):.0f} ms late at the simulated mic')


@pytest.mark.parametrize('fx', _fixtures('questions'), ids=lambda f: f['name'])
def test_spoken_question_gets_a_spoken_answer_with_the_fact(graph, mic, asr, fx):
    graph.observer.reset_conversation()
    turn = graph.ask_mic(mic, fx)
    assert turn.answered, explain(graph, turn)
    assert 'finished' in turn.record.playback and not turn.record.interrupted
    graph.wait_idle(30, 0.5)       # the echo of the reply's end is over before we transcribe
    ECHO_TURNS.extend((fx['name'], t.transcript) for t in turn.other_turns
                      if t.transcript.strip() or t.chunks)
    said = heard(asr, turn)
    # what was played is the reply the LLM wrote (the audio is intelligible)
    written = set(fixture_set.words(turn.reply_text))
    assert len(written & set(fixture_set.words(said))) >= len(written) / 2, (said, turn.reply_text)
    right = fixture_set.contains_fact(said, fx['expected_fact'])
    ANSWERS[fx['name']] = (turn.transcript, said, right)
    # the stamps of a complete turn, in causal order, and a TurnMetrics record
    st = turn.stamps()
    chain = [st.get(k, 0) for k in turn_result.CHAIN]
    assert all(chain) and chain == sorted(chain), dict(zip(turn_result.CHAIN, chain))
    lat = turn.latencies()
    # The gate's speech end vs the truth. Silero judges 32 ms blocks whose phase against
    # the speech is random here; over 16 phases the clean fixtures' error spans about
    # -70..+120 ms offline, and a live gate carries VAD state from the previous turn.
    # Babble is speech-like: the VAD may hold on to it well after the words end.
    late_bound = 2000 if (fx['noise'] or {}).get('kind') == 'babble' else 600
    assert -200 < lat['vad_end_error_ms'] < late_bound, lat
    assert turn.record.metrics is not None and turn.record.metrics['e2e_ms'] > 0


def test_most_spoken_answers_contain_the_fact():
    """At least half of the spoken answers carry the expected fact.

    The bound is loose on purpose: with the CPU models (whisper tiny.en, Qwen2.5 0.5B) runs
    here got 4 to 6 of the 6 questions right; the misses were tiny.en hearing espeak-ng's
    "France" as "friends" and the 0.5B model calling the red planet Jupiter. The bench
    reports the accuracy of every run (`wallie bench`).
    """
    if not ANSWERS:
        pytest.skip('no question was asked (deselected)')
    right = [n for n, (_, _, ok) in ANSWERS.items() if ok]
    wrong = {n: (q, a) for n, (q, a, ok) in ANSWERS.items() if not ok}
    print(f'\nexpected fact in {len(right)}/{len(ANSWERS)} spoken answers; wrong: {wrong}')
    assert len(right) >= math.ceil(FACT_BOUND * len(ANSWERS)), wrong


def test_own_voice_never_opened_a_turn():
    """While the questions were answered, Wallie's reply (heard back through the echo path)
    must never have become a turn of its own (it would answer itself)."""
    if not ANSWERS:
        pytest.skip('no question was asked (deselected)')
    assert not ECHO_TURNS, f'turns opened by Wallie\'s own voice: {ECHO_TURNS}'


def test_follow_up_question_uses_the_previous_answer(graph, mic, asr):
    first = _pick('a first question', set='followup', turn=1)
    second = _pick('its follow-up', set='followup', group=first.get('group'), turn=2)
    graph.observer.reset_conversation()
    t1 = graph.ask_mic(mic, first)
    assert t1.answered and fixture_set.contains_fact(t1.reply_text, first['expected_fact']), \
        explain(graph, t1)
    t2 = graph.ask_mic(mic, second)       # "And what about Germany?"
    assert t2.answered, explain(graph, t2)
    said = heard(asr, t2)
    assert fixture_set.contains_fact(said, second['expected_fact']), \
        f'follow-up answer {said!r} (text {t2.reply_text!r}, heard {t2.transcript!r})'
    history = graph.observer.history_turns()
    assert [h['turn_id'] for h in history][-2:] == [t1.turn_id, t2.turn_id], history


def test_no_wake_word_no_answer_and_wake_word_answer(graph, mic):
    obs = graph.observer
    obs.set_params('voice_gate', {'wake.engine': 'openwakeword', 'wake.word': 'hey_jarvis',
                                  'wake.followup_ms': 0})
    try:
        time.sleep(1.5)                      # the wake model loads on the gate's worker
        obs.reset_conversation()
        quiet = graph.ask_mic(mic, _pick('no wake word', set='wake', wake_word=False),
                              expect_reply=False)
        turns = [quiet.record] + quiet.other_turns if quiet.record else []
        assert not any(t.chunks or t.audible for t in turns), explain(graph, quiet)
        wake_fx = _pick('a wake word', set='wake', wake_word=True, wake_phrase='hey jarvis')
        woke = graph.ask_mic(mic, wake_fx)
        assert woke.answered, explain(graph, woke)
        assert woke.record.wake and woke.record.wake[0]['keyword'] == 'hey_jarvis'
        assert fixture_set.contains_fact(woke.reply_text, wake_fx['expected_fact']), \
            explain(graph, woke)
    finally:
        obs.set_params('voice_gate', {'wake.engine': 'none', 'wake.followup_ms': 5000})


@pytest.mark.parametrize('fx', _fixtures('nonspeech'), ids=lambda f: f['name'])
def test_silence_and_noise_open_no_turn(graph, mic, fx):
    res = graph.ask_mic(mic, fx, expect_reply=False, quiet_s=3.0)
    turns = ([res.record] if res.record else []) + res.other_turns
    assert not any(t.chunks or t.audible for t in turns), explain(graph, res)
    assert not any(t.transcript.strip() for t in turns), \
        [(t.turn_id, t.transcript) for t in turns]
