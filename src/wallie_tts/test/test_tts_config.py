"""The tts parameter table and its mapping (no ROS): the table's defaults are the settings
dataclasses' defaults, and set values land in the right field."""

import pytest

from wallie_common.param_table import defaults
from wallie_tts.config import (
    PARAMS,
    EngineSettings,
    StreamSettings,
    engine_from_params,
    stream_from_params,
)


def test_defaults_are_the_settings_defaults():
    p = defaults(PARAMS)
    assert engine_from_params(p) == EngineSettings()
    assert stream_from_params(p) == StreamSettings()


def test_values_land_in_the_settings():
    p = defaults(PARAMS)
    p.update({'tts.engine': 'xtts', 'tts.piper.threads': 2, 'tts.espeak.voice': 'en-gb',
              'tts.speaker_wav': '/voices/me.wav', 'tts.xtts.device': 'cpu',
              'tts.frame_ms': 20, 'tts.volume': 0.5, 'tts.first_piece_max_words': 0})
    e = engine_from_params(p)
    assert (e.engine, e.piper.threads, e.espeak.voice) == ('xtts', 2, 'en-gb')
    assert (e.xtts.speaker_wav, e.xtts.device) == ('/voices/me.wav', 'cpu')
    s = stream_from_params(p)
    assert (s.frame_ms, s.volume, s.first_piece_max_words) == (20, 0.5, 0)


@pytest.mark.parametrize('spec', PARAMS, ids=[s.name for s in PARAMS])
def test_every_parameter_documented_and_its_default_valid(spec):
    assert len(spec.description) > 10
    assert spec.check(spec.default) is None
