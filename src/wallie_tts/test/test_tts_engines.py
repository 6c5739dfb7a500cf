"""Engines: Piper and espeak-ng for real, the espeak-ng fallback, XTTS when it can run."""

import shutil
import threading

import numpy as np
import pytest

from wallie_tts.config import EngineSettings, EspeakSettings, PiperSettings, XttsSettings
from wallie_tts.engine import EngineError, create_engine, load_engine

needs_espeak = pytest.mark.skipif(shutil.which('espeak-ng') is None,
                                  reason='espeak-ng not installed (apt-get install espeak-ng)')


def _audio(engine, text):
    blocks = list(engine.synthesize(text, threading.Event()))
    assert blocks and all(b.dtype == np.float32 for b in blocks)
    return np.concatenate(blocks)


@pytest.fixture(scope='module')
def piper():
    result = load_engine(EngineSettings(engine='piper'), allow_fallback=False)
    yield result.engine
    result.engine.close()


def test_piper_speaks(piper):
    assert piper.sample_rate == 22050
    audio = _audio(piper, 'The capital of France is Paris.')
    assert 1.0 < len(audio) / piper.sample_rate < 4.0
    assert 0.3 < np.abs(audio).max() <= 1.0
    assert np.isfinite(audio).all()


def test_piper_speaking_rate(piper):
    normal = _audio(piper, 'One two three four five six.')
    fast = len(np.concatenate(list(piper.synthesize('One two three four five six.',
                                                    threading.Event(), speed=1.5))))
    assert fast < 0.8 * len(normal)


def test_piper_stops_between_sentences(piper):
    stop = threading.Event()
    gen = piper.synthesize('First sentence here. Second one. Third one.', stop)
    next(gen)
    stop.set()
    assert list(gen) == []


@needs_espeak
def test_espeak_speaks():
    result = load_engine(EngineSettings(engine='espeak'))
    eng = result.engine
    assert result.fallback_reason is None and eng.sample_rate == 22050
    audio = _audio(eng, 'Hello world, this is espeak.')
    assert 1.0 < len(audio) / eng.sample_rate < 4.0
    assert np.abs(audio).max() > 0.1


@needs_espeak
def test_espeak_text_is_not_an_option():
    eng = create_engine(EngineSettings(engine='espeak'))
    eng.load()
    assert len(_audio(eng, '--help -v xx')) > 0


def test_espeak_missing_binary_is_clear():
    eng = create_engine(EngineSettings(engine='espeak',
                                       espeak=EspeakSettings(executable='no-such-espeak')))
    with pytest.raises(EngineError, match='apt-get install espeak-ng'):
        eng.load()


@needs_espeak
def test_fallback_to_espeak_when_model_missing(tmp_path):
    settings = EngineSettings(engine='piper',
                              piper=PiperSettings(model_path=str(tmp_path / 'nope.onnx')))
    result = load_engine(settings)
    assert result.engine.name == 'espeak'
    assert result.requested == 'piper'
    assert 'nope.onnx' in result.fallback_reason


@needs_espeak
def test_fallback_when_model_corrupt(tmp_path):
    bad = tmp_path / 'voice.onnx'
    bad.write_bytes(b'not an onnx model')
    (tmp_path / 'voice.onnx.json').write_text('{}')
    result = load_engine(EngineSettings(piper=PiperSettings(model_path=str(bad))))
    assert result.engine.name == 'espeak' and 'voice.onnx' in result.fallback_reason


def test_no_fallback_raises(tmp_path):
    settings = EngineSettings(piper=PiperSettings(model_path=str(tmp_path / 'x.onnx')))
    with pytest.raises(EngineError, match='does not exist'):
        load_engine(settings, allow_fallback=False)


def test_unknown_engine():
    with pytest.raises(EngineError, match='unknown TTS engine'):
        create_engine(EngineSettings(engine='festival'))


def _xtts_usable():
    try:
        import torch
        import TTS  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


def test_xtts_without_coqui_or_gpu_is_a_clear_error():
    if _xtts_usable():
        pytest.skip('coqui-tts and a GPU are present: the real test runs instead')
    eng = create_engine(EngineSettings(engine='xtts'))
    with pytest.raises(EngineError, match='coqui-tts|CUDA|checkpoint'):
        eng.load()


@pytest.mark.gpu
@pytest.mark.skipif(not _xtts_usable(), reason='needs coqui-tts, torch with CUDA and a GPU')
def test_xtts_streams(tmp_path):
    result = load_engine(EngineSettings(engine='xtts', xtts=XttsSettings()),
                         allow_fallback=False)
    eng = result.engine
    assert eng.sample_rate == 24000
    blocks = list(eng.synthesize('The capital of France is Paris.', threading.Event()))
    assert len(blocks) >= 1
    assert len(np.concatenate(blocks)) / 24000 > 1.0
    eng.close()
