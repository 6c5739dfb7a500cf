"""Parameter tables: documented, ranged, and their defaults are the engines' defaults (so the
benchmark, which builds engines from the dataclass defaults, measures what the node runs)."""

import pytest

from wallie_audio import config as C
from wallie_audio.echo import EchoConfig
from wallie_audio.voice_gate import GateConfig
from wallie_common.param_table import defaults

ALL = C.GATE_PARAMS + C.CAPTURE_PARAMS + C.PLAYER_PARAMS


@pytest.mark.parametrize('spec', ALL, ids=[s.name for s in ALL])
def test_every_parameter_documented_and_ranged(spec):
    assert len(spec.description) > 10
    if isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
        assert spec.min is not None and spec.max is not None, spec.name
        assert spec.min <= spec.default <= spec.max, spec.name


def test_parameter_defaults_are_engine_defaults():
    p = defaults(C.GATE_PARAMS)
    assert C.gate_config(p) == GateConfig()
    assert C.echo_config(p) == EchoConfig()


def test_parameters_map_onto_the_config():
    p = defaults(C.GATE_PARAMS)
    p.update({'vad.end_offset_ms': 40, 'wake.vad_threshold': 0.0, 'wake.buffer_ms': 2000,
              'wake.hangover_ms': 500, 'vad.neg_threshold': 0.9})
    g = C.gate_config(p)
    assert g.endpoint.end_offset_ms == 40
    assert (g.wake_vad_threshold, g.wake_buffer_ms, g.wake_hangover_ms) == (0.0, 2000, 500)
    assert g.endpoint.neg_threshold == g.endpoint.threshold      # clamped, not rejected
