"""One row of a node's parameter table: name, default, description and the rules a value
must satisfy (no ROS).

Every package writes its table with `Param` beside the functions that turn the values into
its config dataclasses, so the mapping is tested without ROS; `wallie_common.params` turns
the rows into declared ROS parameters and checks new values with `Param.check`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable


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


def defaults(table: Iterable[Param]) -> dict[str, Any]:
    """{name: default} of a table: the values a node starts with when nothing is set."""
    return {p.name: p.default for p in table}
