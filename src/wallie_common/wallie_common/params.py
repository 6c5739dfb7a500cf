"""Declare node parameters from one table, validate them on set, and read them back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.parameter import Parameter


@dataclass(frozen=True)
class Param:
    """One ROS parameter: name, default and the rules a new value must satisfy."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    read_only: bool = False
    reload: bool = False          # a change needs the engine rebuilt (done off the executor)

    def descriptor(self) -> ParameterDescriptor:
        """Build the ParameterDescriptor shown by `ros2 param describe`."""
        extra = ''
        if self.choices:
            extra = ' One of: ' + ', '.join(str(c) for c in self.choices) + '.'
        if self.reload:
            extra += ' Changing it reloads the model in the background.'
        desc = ParameterDescriptor(description=self.description + extra,
                                   read_only=self.read_only)
        if self.min is not None and self.max is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                desc.integer_range = [IntegerRange(
                    from_value=int(self.min), to_value=int(self.max), step=0)]
            elif isinstance(self.default, float):
                desc.floating_point_range = [FloatingPointRange(
                    from_value=float(self.min), to_value=float(self.max), step=0.0)]
        return desc

    def check(self, value: Any) -> str | None:
        """Return why `value` is invalid, or None if it is fine."""
        expected = type(self.default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            return (f'{self.name}: expected {expected.__name__}, '
                    f'got {type(value).__name__} {value!r}')
        if isinstance(value, float) and not math.isfinite(value):
            return f'{self.name}: {value} is not a finite number'
        if self.min is not None and isinstance(value, (int, float)) and value < self.min:
            return f'{self.name}: {value} is below the minimum {self.min}'
        if self.max is not None and isinstance(value, (int, float)) and value > self.max:
            return f'{self.name}: {value} is above the maximum {self.max}'
        if self.choices is not None and value not in self.choices:
            return f'{self.name}: {value!r} is not one of {list(self.choices)}'
        return None


def declare(node, specs: Iterable[Param]) -> None:
    """Declare every parameter of the table on `node`."""
    for spec in specs:
        node.declare_parameter(spec.name, spec.default, spec.descriptor())


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
