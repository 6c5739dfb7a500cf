"""StageNode: the lifecycle node base every Wallie stage derives from."""

from __future__ import annotations

from typing import Any, ClassVar

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import LifecycleNode
from rclpy.parameter import Parameter

from wallie_common import params as P
from wallie_common import timeutil
from wallie_common.diagnostics import Diagnostics
from wallie_common.qos import EVENT_QOS
from wallie_interfaces.msg import StageStamp

DIAGNOSTICS_PERIOD_S = 1.0
COMMON_PARAMS = (
    P.Param('autostart', False, 'Configure and activate this node by itself at start-up '
            '(instead of waiting for the manager).', read_only=True),
)


class StageNode(LifecycleNode):
    """Lifecycle node with a parameter table, diagnostics and latency stamps.

    Subclasses set PARAMS and override the on_* transition callbacks. They get:
    `self.params` (current values), `self.diag`, `self.warn_throttled()`,
    `self.publish_stamp()` and `on_params_changed(changed)` after a validated set.
    """

    PARAMS: ClassVar[tuple[P.Param, ...]] = ()

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._specs = {p.name: p for p in COMMON_PARAMS + tuple(self.PARAMS)}
        P.declare(self, self._specs.values())
        self.params: dict[str, Any] = P.values(self, self._specs.values())
        self.add_on_set_parameters_callback(self._validate_params)
        self.add_post_set_parameters_callback(self._apply_params)
        self.diag = Diagnostics(self.get_fully_qualified_name())
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._stamp_pub = self.create_publisher(StageStamp, 'metrics/stamps', EVENT_QOS)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics)

    # -- parameters -------------------------------------------------------------------
    def _validate_params(self, params: list[Parameter]):
        result = P.validate(self._specs, params)
        if not result.successful:
            self.get_logger().warning(f'rejected parameter change: {result.reason}')
        return result

    def _apply_params(self, params: list[Parameter]) -> None:
        changed = {}
        for p in params:
            if p.name in self._specs:
                spec = self._specs[p.name]
                value = p.value
                if isinstance(spec.default, float) and isinstance(value, int):
                    value = float(value)
                if self.params.get(p.name) != value:
                    changed[p.name] = value
                    self.params[p.name] = value
        if changed:
            try:
                self.on_params_changed(changed)
            except Exception as exc:  # a bad apply must not kill the executor thread
                self.get_logger().error(f'applying {sorted(changed)} failed: {exc!r}')
                self.diag.error(f'applying parameters failed: {exc}')

    def on_params_changed(self, changed: dict[str, Any]) -> None:
        """Apply validated parameter changes (override; must not block)."""

    def needs_reload(self, changed: dict[str, Any]) -> bool:
        """True if one of the changed parameters is marked reload=True."""
        return any(self._specs[name].reload for name in changed if name in self._specs)

    # -- health and metrics -----------------------------------------------------------
    def publish_diagnostics(self) -> None:
        self._diag_pub.publish(self.diag.to_msg(self.get_clock().now().to_msg()))

    def warn_throttled(self, key: str, msg: str, period_s: float = 5.0) -> None:
        """Log a warning at most once per period, counting every occurrence."""
        self.diag.throttled(key, period_s, self.get_logger().warning, msg)

    def publish_stamp(self, turn_id: str, stage: str, stamp_ns: int | None = None) -> None:
        """Report that `turn_id` reached `stage` (a StageStamp constant) at `stamp_ns`."""
        msg = StageStamp(turn_id=turn_id, stage=stage, node=self.get_name())
        msg.stamp = timeutil.to_msg(stamp_ns if stamp_ns is not None else timeutil.now_ns())
        self._stamp_pub.publish(msg)
