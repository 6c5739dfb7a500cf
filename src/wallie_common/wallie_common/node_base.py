"""StageNode: the lifecycle node base every Wallie stage derives from."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode
from rclpy.parameter import Parameter

from wallie_common import params as P
from wallie_common import timeutil
from wallie_common.diagnostics import Diagnostics
from wallie_common.qos import EVENT_QOS
from wallie_interfaces.msg import StageStamp

DIAGNOSTICS_PERIOD_S = 1.0
# Relative, so it follows the node's namespace: two robots on one domain keep apart.
DIAGNOSTICS_TOPIC = 'diagnostics'
COMMON_PARAMS = (
    P.Param('autostart', False, 'Configure and activate this node by itself at start-up '
            '(instead of waiting for the manager).', read_only=True),
)


class StageNode(LifecycleNode):
    """Lifecycle node with a parameter table, diagnostics and latency stamps.

    Subclasses set PARAMS and override the on_* transition callbacks. They get:
    `self.params` (current values), `self.diag`, `self.warn_throttled()`,
    `self.publish_stamp()` and `on_params_changed(changed)` after a validated set.

    Parameters never claim what is not running: `check_params()` refuses a value that
    cannot work (a model that is not in the store) before it is set, with the reason, and a
    change that passed but then failed to apply is put back with `revert_params()`.
    """

    PARAMS: ClassVar[tuple[P.Param, ...]] = ()

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._specs = {p.name: p for p in COMMON_PARAMS + tuple(self.PARAMS)}
        P.declare(self, self._specs.values())
        self.params: dict[str, Any] = P.values(self, self._specs.values())
        self.previous_params: dict[str, Any] = {}
        self._reverting = threading.local()
        self.add_on_set_parameters_callback(self._validate_params)
        self.add_post_set_parameters_callback(self._apply_params)
        self.diag = Diagnostics(self.get_fully_qualified_name())
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._stamp_pub = self.create_publisher(StageStamp, 'metrics/stamps', EVENT_QOS)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics)

    # -- parameters -------------------------------------------------------------------
    def _validate_params(self, params: list[Parameter]):
        if getattr(self._reverting, 'on', False):
            return SetParametersResult(successful=True)   # back to values that run
        result = P.validate(self._specs, params)
        if result.successful:
            new = {p.name: p.value for p in params if p.name in self._specs}
            try:
                why = self.check_params(new) if new else None
            except Exception as exc:  # a check must not take the parameter service down
                why = f'cannot check {sorted(new)}: {exc!r}'
            if why:
                result = SetParametersResult(successful=False, reason=why)
        if not result.successful:
            self.get_logger().warning(f'rejected parameter change: {result.reason}')
        return result

    def check_params(self, new: dict[str, Any]) -> str | None:
        """Refuse values that pass the table's rules but cannot work here, e.g. a model id
        that is not in the model store (override). `new` holds the names being set (already
        type- and range-checked); `self.params` the current values. Return the reason, or
        None. Runs in the parameter service callback: cheap checks only (stat, no load)."""
        return None

    def _apply_params(self, params: list[Parameter]) -> None:
        changed = {}
        previous = {}
        for p in params:
            if p.name in self._specs:
                spec = self._specs[p.name]
                value = p.value
                if isinstance(spec.default, float) and isinstance(value, int):
                    value = float(value)
                if self.params.get(p.name) != value:
                    previous[p.name] = self.params.get(p.name)
                    changed[p.name] = value
                    self.params[p.name] = value
        if changed and getattr(self._reverting, 'on', False):
            return                  # the old values are what runs: nothing to apply
        if changed:
            self.previous_params = previous
            try:
                self.on_params_changed(changed)
            except Exception as exc:  # a bad apply must not kill the executor thread
                self.get_logger().error(f'applying {sorted(changed)} failed: {exc!r}')
                self.diag.error(f'applying parameters failed: {exc}')

    def on_params_changed(self, changed: dict[str, Any]) -> None:
        """Apply validated parameter changes (override; must not block)."""

    def revert_params(self, previous: dict[str, Any], failed: dict[str, Any],
                      why: str) -> None:
        """A change that passed the checks failed to apply (a model that does not load):
        set the parameters back to `previous` (the values still in use, e.g. a copy of
        `self.previous_params` taken in on_params_changed), so `ros2 param get` reports
        what runs, and report the failure at ERROR. A parameter set again meanwhile (its
        value is no longer the failed one) is left alone."""
        back = [Parameter(name, value=previous[name]) for name, value in failed.items()
                if name in previous and self.params.get(name) == value]
        self.diag.error(why)
        names = ', '.join(f'{p.name}={p.value!r}' for p in back)
        self.get_logger().error(f'{why}; parameters put back to the running values ({names})'
                                if back else why)
        if back:
            self._reverting.on = True
            try:
                self.set_parameters(back)
            finally:
                self._reverting.on = False

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
