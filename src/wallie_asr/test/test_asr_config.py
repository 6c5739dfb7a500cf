"""The asr parameter table and its mapping (no ROS): defaults are the engine's defaults, so
the benchmark, which builds engines from the dataclass defaults, measures what the node runs."""

import pytest

from wallie_asr.config import (
    PARAMS,
    EngineConfig,
    StreamConfig,
    engine_from_params,
    reliability_from_params,
    stream_from_params,
)
from wallie_asr.reliability import ReliabilityConfig
from wallie_common.param_table import defaults


def test_defaults_are_the_configs_defaults():
    p = defaults(PARAMS)
    assert engine_from_params(p) == EngineConfig()
    assert stream_from_params(p) == StreamConfig()
    assert reliability_from_params(p) == ReliabilityConfig()


def test_values_land_in_the_config():
    p = defaults(PARAMS)
    p.update({'asr.model': '/models/x', 'asr.language': '', 'asr.filler_phrases': [],
              'asr.partials': False, 'asr.final_wait_ms': 120, 'asr.reject.enabled': False})
    e = engine_from_params(p)
    assert (e.model, e.language, e.filler_phrases) == ('/models/x', 'en', ())
    s = stream_from_params(p)
    assert (s.partials, s.final_wait_ms) == (False, 120)
    assert not reliability_from_params(p).enabled


@pytest.mark.parametrize('spec', PARAMS, ids=[s.name for s in PARAMS])
def test_every_parameter_documented_and_its_default_valid(spec):
    assert len(spec.description) > 10
    assert spec.check(spec.default) is None
