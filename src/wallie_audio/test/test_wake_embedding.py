"""The embedding wake engine: openWakeWord's feature models + the shipped "wallie" classifier
and words enrolled from text or recordings. Real models, speech synthesized at test time in
voices the shipped model was never trained on."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from wallie_audio import wake_data as D
from wallie_audio.vad import SileroVad
from wallie_audio.voice_gate import (
    END_OF_TURN,
    ActivityOut,
    GateConfig,
    PieceOut,
    VoiceGate,
    WakeOut,
)
from wallie_audio.wake import make_engine
from wallie_audio.wake_model import (
    FEATURES_ID,
    WALLIE_ID,
    Classifier,
    EmbeddingWake,
    FrontEnd,
)
from wallie_common import model_store
from wallie_common.model_store import ModelNotFoundError

pytestmark = pytest.mark.skipif(not D.have_tools(('espeak:en-us',)) == [],
                                reason='espeak-ng not installed')
T0 = 1_700_000_000 * 10**9
HELD_OUT = 'espeak:en-us-nyc+m5'       # never used for training (wake_data.HELDOUT_VOICES)


@pytest.fixture(scope='module')
def front():
    return FrontEnd()


@pytest.fixture(scope='module')
def wallie(front):
    return EmbeddingWake(['wallie'], front=front)


def hits(engine, audio):
    engine.reset()
    x = np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(16000, np.float32)])
    out = [engine.process(x[i:i + 512]) for i in range(0, x.shape[0] - 511, 512)]
    return [h for h in out if h is not None]


def test_streaming_and_whole_clip_features_are_identical(front):
    x = D.wake_clip('Hey Wallie', HELD_OUT, 'what time is it', 0.0, 1.0, 1).audio
    whole = front.clip(x)
    front.reset()
    parts = [front.stream(x[i:i + 500] * 32767.0) for i in range(0, x.shape[0], 500)]
    assert np.array_equal(np.concatenate(parts), whole)
    assert whole.shape == (x.shape[0] // 1280, 96)


@pytest.mark.parametrize('voice', [HELD_OUT, 'espeak:en-gb-x-gbcwmd+f4', 'piper:joe'])
def test_wallie_is_detected_in_voices(wallie, voice):
    for phrase in ('Wallie', 'Hey Wallie'):
        c = D.wake_clip(phrase, voice, 'what time is it', 0.3, 1.0, 2)
        got = hits(wallie, c.audio)
        assert [h.keyword for h in got] == ['wallie'], (phrase, voice)


@pytest.mark.parametrize('text', ['Walter went to the volley ball match.',
                                  'Molly found her wallet by the wall.',
                                  'What is the capital of France?',
                                  'Hey Jarvis, turn on the lights.'])
def test_wallie_ignores_other_speech(wallie, text):
    for voice in (HELD_OUT, 'espeak:en-us+m7'):
        assert hits(wallie, D.synth(text, voice)) == [], (text, voice)


def test_sensitivity_moves_the_threshold(wallie):
    c = next(iter(wallie.classifiers.values()))
    wallie.set_sensitivity(0.5)
    assert wallie.threshold(c) == pytest.approx(c.threshold)
    wallie.set_sensitivity(0.0)
    strict = wallie.threshold(c)
    wallie.set_sensitivity(1.0)
    eager = wallie.threshold(c)
    wallie.set_sensitivity(0.5)
    assert eager < c.threshold < strict < 1.0


def test_classifier_roundtrip_and_bad_file(tmp_path, wallie):
    c = next(iter(wallie.classifiers.values()))
    sha = c.save(tmp_path / 'x.npz')
    assert sha == hashlib.sha256((tmp_path / 'x.npz').read_bytes()).hexdigest()
    back = Classifier.load(tmp_path / 'x.npz')
    w = np.random.default_rng(0).normal(size=(3, c.window, 96)).astype(np.float32)
    assert np.allclose(back.scores(w), c.scores(w))
    (tmp_path / 'bad.npz').write_bytes(b'not a model')
    with pytest.raises(ValueError, match='not a wake word model'):
        Classifier.load(tmp_path / 'bad.npz')


def test_missing_or_corrupted_wake_model_names_the_fetch_command(tmp_path, monkeypatch):
    real = model_store.store_dir()
    store = tmp_path / 'store'
    monkeypatch.setenv(model_store.ENV_STORE_DIR, str(store))
    with pytest.raises(ModelNotFoundError, match=f'wallie models fetch {FEATURES_ID}'):
        make_engine('embedding', 'wallie')
    for mid in (FEATURES_ID, WALLIE_ID):
        shutil.copytree(real / mid, store / mid)
    assert make_engine('embedding', 'wallie').keywords == ['wallie']
    f = store / WALLIE_ID / 'wallie.npz'
    data = bytearray(f.read_bytes())
    data[100] ^= 0xFF                                      # same size, wrong content
    f.write_bytes(bytes(data))
    with pytest.raises(ModelNotFoundError,
                       match=f'wallie models fetch --force {WALLIE_ID}'):
        make_engine('embedding', 'wallie')


def test_wallie_model_comes_from_the_package_with_its_checksum(tmp_path):
    spec = model_store.load_manifest().get(WALLIE_ID)
    assert spec.default and spec.package and spec.role == 'wake'
    res = model_store.fetch([WALLIE_ID], progress=False, store=tmp_path)
    assert res[0].action == 'fetched'
    assert model_store.verify([WALLIE_ID], tmp_path) == []


# -- the turn after the word ---------------------------------------------------------

def gate_run(wake, audio):
    vad = SileroVad()
    gate = VoiceGate(GateConfig(followup_ms=0), vad, wake)
    outs = []
    for k in range(audio.shape[0] // 512):
        outs += gate.process(audio[k * 512:(k + 1) * 512], T0 + k * 32_000_000)
    return outs


@pytest.mark.parametrize('gap_s', [0.0, 1.0])
def test_question_after_the_word_is_the_turn(wallie, gap_s):
    """"Wallie, what time is it?" in one breath, or after a pause: one turn, whose audio
    starts after the word and holds the whole question."""
    c = D.wake_clip('Wallie', HELD_OUT, 'what time is it', gap_s, 1.0, 3, lead_s=1.0,
                    tail_s=1.5)
    wallie.reset()
    outs = gate_run(wallie, c.audio)
    wakes = [o for o in outs if isinstance(o, WakeOut)]
    ends = [o for o in outs if isinstance(o, ActivityOut) and o.kind == END_OF_TURN]
    assert len(wakes) == 1 and len(ends) == 1 and ends[0].turn_id == wakes[0].turn_id
    pieces = [o for o in outs if isinstance(o, PieceOut) and o.turn_id == wakes[0].turn_id]
    first_s = (pieces[0].stamp_ns - T0) / 1e9
    word_end_s = c.wake_ends[0] / 16000
    q_start_s = word_end_s + gap_s
    # the turn starts after most of the word and no later than the question
    assert word_end_s - 0.25 <= first_s <= q_start_s + 0.02, (first_s, word_end_s)
    assert (ends[0].speech_end_ns - T0) / 1e9 >= c.seconds - 1.5 - 0.1


# -- any word ------------------------------------------------------------------------

@pytest.fixture(scope='module')
def small_negatives(tmp_path_factory):
    from wallie_audio import wake_train
    old = wake_train.NEG_CACHE
    wake_train.NEG_CACHE = tmp_path_factory.mktemp('neg') / 'negatives.npz'
    old_n = (wake_train.NEG_CLIPS, wake_train.TEXT_CLIPS, wake_train.RECORDING_COPIES)
    wake_train.NEG_CLIPS, wake_train.TEXT_CLIPS, wake_train.RECORDING_COPIES = 80, 80, 20
    yield
    wake_train.NEG_CACHE = old
    wake_train.NEG_CLIPS, wake_train.TEXT_CLIPS, wake_train.RECORDING_COPIES = old_n


def test_any_word_from_its_text(front, small_negatives, tmp_path, monkeypatch):
    from wallie_audio import wake_model, wake_train
    monkeypatch.setattr(wake_model, 'WAKE_WORD_DIR', tmp_path)
    path = wake_train.enroll_text('hey robot', front=front, log=lambda m: None)
    assert path == tmp_path / 'hey_robot.npz'
    eng = EmbeddingWake(['hey robot'], front=front)
    assert eng.keywords == ['hey_robot']
    for voice in (HELD_OUT, 'espeak:en-gb-x-gbcwmd+f4'):
        assert len(hits(eng, D.synth('hey robot', voice))) == 1, voice
        assert hits(eng, D.synth('The weather has been lovely all week.', voice)) == []


def test_any_word_from_three_recordings(front, small_negatives, tmp_path, monkeypatch):
    from wallie_audio import wake_model, wake_train
    monkeypatch.setattr(wake_model, 'WAKE_WORD_DIR', tmp_path)
    # three "recordings" of one speaker, a voice no model was trained on
    recs = [D.synth('computer', 'flite:slt' if shutil.which('flite') else HELD_OUT, s, i)
            for i, s in enumerate((0.9, 1.0, 1.1))]
    wake_train.enroll_recordings('computer', recs, front=front, log=lambda m: None)
    eng = EmbeddingWake(['computer'], front=front)
    assert len(hits(eng, D.in_room(recs[1], 1.0, 7))) == 1
    assert hits(eng, D.synth('Can you pass me the salt, please?', HELD_OUT)) == []
    with pytest.raises(ValueError, match='3 recordings'):
        wake_train.enroll_recordings('computer', recs[:2], front=front)
