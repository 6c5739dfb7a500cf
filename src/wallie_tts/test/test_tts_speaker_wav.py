"""Voice-cloning reference validation (XTTS tts.speaker_wav): bad files get a clear error."""

import numpy as np
import pytest
import soundfile

from wallie_tts.engine import EngineError
from wallie_tts.xtts_engine import SpeakerWavError, validate_speaker_wav


def speechlike(seconds, rate=22050, seed=0):
    """Noise bursts with syllable-rate envelope: energy like speech, no model needed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)
    return (0.3 * env * rng.standard_normal(len(t))).astype(np.float32)


def write(tmp_path, name, data, rate=22050, **kw):
    path = tmp_path / name
    soundfile.write(str(path), data, rate, **kw)
    return path


def text_file(path):
    path.write_text('this is not audio')
    return path


def test_good_file(tmp_path):
    path = write(tmp_path, 'me.wav', speechlike(12))
    audio = validate_speaker_wav(path)
    assert audio.duration_s == pytest.approx(12, abs=0.01) and audio.sample_rate == 22050


def test_flac_is_fine(tmp_path):
    validate_speaker_wav(write(tmp_path, 'me.flac', speechlike(15, 16000), 16000))


@pytest.mark.parametrize('make, match', [
    (lambda p: write(p, 'short.wav', speechlike(5)), r'5\.0 s long.*10-30 s'),
    (lambda p: write(p, 'long.wav', speechlike(35)), r'35\.0 s long.*at most 30 s'),
    (lambda p: write(p, 'silent.wav', np.zeros(15 * 22050, np.float32)), 'silent'),
    (lambda p: write(p, 'hum.wav', np.full(15 * 22050, 1e-4, np.float32)), 'silent'),
    (lambda p: write(p, 'stereo.wav', np.stack([speechlike(12)] * 2, axis=1)), 'mono'),
    (lambda p: write(p, 'phone.wav', speechlike(12, 8000), 8000), '8000 Hz'),
    (lambda p: text_file(p / 'notes.wav'), 'not a readable audio file'),
    (lambda p: p / 'missing.wav', 'does not exist'),
    (lambda p: write(p, 'nan.wav', np.full(12 * 22050, np.nan, np.float32), subtype='FLOAT'),
     'NaN'),
])
def test_bad_files(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(SpeakerWavError, match=match):
        validate_speaker_wav(path)


def test_error_is_an_engine_error():
    assert issubclass(SpeakerWavError, EngineError)
    with pytest.raises(SpeakerWavError, match='no speaker file'):
        validate_speaker_wav('')
