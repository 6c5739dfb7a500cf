"""The ROS side of a parameter table: declare its rows on a node, validate new values on
set, and read them back. The rows themselves are `wallie_common.param_table.Param` (no ROS).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.parameter import Parameter

from wallie_common.param_table import Param

__all__ = ['Param', 'declare', 'descriptor', 'validate', 'values']


def descriptor(spec: Param) -> ParameterDescriptor:
    """Build the ParameterDescriptor shown by `ros2 param describe`."""
    extra = ''
    if spec.choices:
        extra = ' One of: ' + ', '.join(str(c) for c in spec.choices) + '.'
    if spec.reload:
        extra += ' Changing it reloads the model in the background.'
    desc = ParameterDescriptor(description=spec.description + extra, read_only=spec.read_only)
    if spec.min is not None and spec.max is not None:
        if isinstance(spec.default, bool):
            pass
        elif isinstance(spec.default, int):
            desc.integer_range = [IntegerRange(
                from_value=int(spec.min), to_value=int(spec.max), step=0)]
        elif isinstance(spec.default, float):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(spec.min), to_value=float(spec.max), step=0.0)]
    return desc


def declare(node, specs: Iterable[Param]) -> None:
    """Declare every parameter of the table on `node`."""
    for spec in specs:
        node.declare_parameter(spec.name, spec.default, descriptor(spec))


def validate(specs: Mapping[str, Param], params: Sequence[Parameter]) -> SetParametersResult:
    """Check a batch of new values; reject the whole batch with a reason if one is bad."""
    for p in params:
        spec = specs.get(p.name)
        if spec is None:
            continue  # not ours (e.g. use_sim_time); rclpy applies its own rules
        if spec.read_only:
            return SetParametersResult(successful=False, reason=f'{p.name} is read-only')
        why = spec.check(p.value)
        if why:
            return SetParametersResult(successful=False, reason=why)
    return SetParametersResult(successful=True)


def values(node, specs: Iterable[Param]) -> dict[str, Any]:
    """Read the current value of every parameter of the table (ints promoted for floats)."""
    out: dict[str, Any] = {}
    for spec in specs:
        value = node.get_parameter(spec.name).value
        if isinstance(spec.default, float) and isinstance(value, int):
            value = float(value)
        out[spec.name] = value
    return out
