"""The one parameter row type: its checks (no ROS) and the descriptor built from it."""

import math

import pytest

from wallie_common.param_table import Param, defaults


@pytest.mark.parametrize('spec, value, ok', [
    (Param('a', 1.0, ''), 2, True),                        # an int where a float is wanted
    (Param('a', 1.0, '', min=0.0, max=1.0), 1.5, False),
    (Param('a', 1.0, '', min=0.0, max=1.0), -0.5, False),
    (Param('a', 1.0, '', min=0.0, max=1.0), 1.0, True),     # bounds are inclusive
    (Param('a', 1.0, ''), math.nan, False),
    (Param('a', 1.0, ''), math.inf, False),
    (Param('a', 1, ''), True, False),                       # a bool is not an int
    (Param('a', 1, ''), 1.0, False),
    (Param('a', 'x', '', choices=('x', 'y')), 'z', False),
    (Param('a', 'x', '', choices=('x', 'y')), 'y', True),
    (Param('a', ['x'], ''), ['y', 'z'], True),
    (Param('a', False, ''), 'true', False),
])
def test_param_checks(spec, value, ok):
    why = spec.check(value)
    assert (why is None) == ok
    if why:
        assert why.startswith('a: ')        # the reason names the parameter


def test_defaults_of_a_table():
    table = (Param('a', 1, ''), Param('b.c', 'x', ''))
    assert defaults(table) == {'a': 1, 'b.c': 'x'}


@pytest.mark.parametrize('spec, int_range, float_range', [
    (Param('a', 3, '', min=0, max=10), (0, 10), None),
    (Param('a', 0.5, '', min=0.0, max=1.0), None, (0.0, 1.0)),
    (Param('a', True, '', min=0, max=1), None, None),       # no range on a bool
    (Param('a', 3, ''), None, None),
])
def test_descriptor_carries_the_range(spec, int_range, float_range):
    from wallie_common.params import descriptor
    d = descriptor(spec)
    assert [(r.from_value, r.to_value) for r in d.integer_range] == \
        ([int_range] if int_range else [])
    assert [(r.from_value, r.to_value) for r in d.floating_point_range] == \
        ([float_range] if float_range else [])


def test_descriptor_describes_choices_reload_and_read_only():
    from wallie_common.params import descriptor
    d = descriptor(Param('m', 'a', 'The model.', choices=('a', 'b'), read_only=True,
                         reload=True))
    assert d.description.startswith('The model. One of: a, b.')
    assert 'reloads the model' in d.description and d.read_only
