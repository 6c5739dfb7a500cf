"""`wallie wake enroll` (from recordings, through the real enrollment) and its bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from wallie_cli import cli

pytestmark = pytest.mark.skipif(shutil.which('espeak-ng') is None,
                                reason='espeak-ng not installed')


def test_enroll_from_three_recordings(tmp_path, monkeypatch, capsys):
    import soundfile as sf
    import soxr

    from wallie_audio import wake_data as D
    from wallie_audio import wake_train
    from wallie_audio.wake_model import Classifier
    monkeypatch.setattr(wake_train, 'NEG_CACHE', tmp_path / 'neg.npz')
    monkeypatch.setattr(wake_train, 'NEG_CLIPS', 40)
    monkeypatch.setattr(wake_train, 'RECORDING_COPIES', 10)
    wavs = []
    for i, speed in enumerate((0.9, 1.0, 1.1)):
        x = np.concatenate([np.zeros(4000, np.float32),
                            D.synth('jupiter', 'espeak:en-us-nyc+m5', speed, i),
                            np.zeros(4000, np.float32)])
        wavs.append(tmp_path / f'r{i}.wav')
        if i == 0:                                  # any rate is resampled
            sf.write(str(wavs[-1]), soxr.resample(x, 16000, 48000), 48000)
        else:
            sf.write(str(wavs[-1]), x, 16000)
    out = tmp_path / 'jupiter.npz'
    assert cli.main(['wake', 'enroll', 'jupiter', *map(str, wavs), '-o', str(out)]) == 0
    assert 'wake.word=jupiter' in capsys.readouterr().out
    model = Classifier.load(out)
    assert model.meta['source'] == 'recordings' and 0.5 <= model.threshold < 1.0
    # two recordings are not enough: a clear error, exit 1, nothing written
    bad = tmp_path / 'bad.npz'
    assert cli.main(['wake', 'enroll', 'jupiter', str(wavs[0]), str(wavs[1]),
                     '-o', str(bad)]) == 1
    assert '3 recordings' in capsys.readouterr().err and not bad.exists()
