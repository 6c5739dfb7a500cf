"""StageNode: the lifecycle node base every Wallie stage derives from."""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, ClassVar

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State as LifecycleStateId
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import (
    LifecycleNode,
    LifecyclePublisher,
    LifecycleState,
    TransitionCallbackReturn,
)
from rclpy.parameter import Parameter

from wallie_common import params as P
from wallie_common import timeutil
from wallie_common.diagnostics import Diagnostics
from wallie_common.qos import EVENT_QOS
from wallie_interfaces.msg import StageStamp

DIAGNOSTICS_PERIOD_S = 1.0
# Relative, so it follows the node's namespace: two robots on one domain keep apart.
DIAGNOSTICS_TOPIC = 'diagnostics'
# Node entity lists, in the order destroy_configured() destroys them last to first.
ENTITY_KINDS = ('publishers', 'subscriptions', 'timers', 'clients', 'services', 'waitables')
COMMON_PARAMS = (
    P.Param('autostart', False, 'Configure and activate this node by itself at start-up '
            '(instead of waiting for the manager).', read_only=True),
)


class NodeReports:
    """Base of a node's adapter for its ROS-free engine's reports (the LLM's scheduler, the
    TTS's queue): counters go to diagnostics, warnings to the throttled log."""

    def __init__(self, node: 'StageNode') -> None:
        self.node = node

    def count(self, key: str) -> None:
        """Count an event on the node's diagnostics."""
        self.node.diag.count(key)

    def warn(self, key: str, text: str) -> None:
        """Log a warning at most once per period per key."""
        self.node.warn_throttled(key, text)


class StageNode(LifecycleNode):
    """Lifecycle node with a parameter table, diagnostics and latency stamps.

    Subclasses set PARAMS and override the on_* transition callbacks. They get:
    `self.params` (current values), `self.diag`, `self.warn_throttled()`,
    `self.publish_stamp()` and `on_params_changed(changed)` after a validated set.

    What `on_configure` creates (publishers, lifecycle publishers, subscriptions, timers,
    services, clients, action servers, and whatever it hands to `destroy_with`) is recorded
    (the node's entities before and after it) and destroyed in one call,
    `destroy_configured()`: at once if configure does not succeed, else by `teardown()`,
    which cleanup, shutdown and error run. A subclass
    overrides `teardown()` to stop its threads first and drop its engine after (calling
    `super().teardown()` in between), and calls `super().on_activate/on_deactivate`, which
    enable its lifecycle publishers and set `self.is_active` (subscriptions and timers are
    not gated by the lifecycle: their callbacks check `self.is_active`).

    Parameters never claim what is not running: `check_params()` refuses a value that
    cannot work (a model that is not in the store) before it is set, with the reason, and a
    change that passed but then failed to apply is put back with `revert_params()`.
    """

    PARAMS: ClassVar[tuple[P.Param, ...]] = ()

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._configured: list[Callable[[], Any]] = []     # destroyers, the last one first
        self._recording = False
        self._active = False
        # Every configure transition (service or trigger_configure) runs through this.
        configure = LifecycleStateId.TRANSITION_STATE_CONFIGURING
        self._callbacks[configure] = self._configure_and_record
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

    # -- lifecycle: what on_configure creates, activation ----------------------------------
    def _configure_and_record(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.destroy_configured()       # what a configure that was never cleaned up left
        before = {kind: list(getattr(self, kind)) for kind in ENTITY_KINDS}
        self._recording = True
        try:
            result = self.on_configure(state)
        except BaseException:
            self._record_new(before)
            self.destroy_configured()
            raise
        self._record_new(before)
        if result != TransitionCallbackReturn.SUCCESS:
            self.destroy_configured()    # a failed configure leaves nothing behind
        return result

    def _record_new(self, before: dict[str, list[Any]]) -> None:
        """Add a destroyer for each entity that is here now and was not in `before`."""
        self._recording = False
        new = {kind: [e for e in getattr(self, kind) if all(e is not b for b in before[kind])]
               for kind in ENTITY_KINDS}
        # a publisher's or subscription's QoS event handlers go with it
        handlers = [h for e in new['publishers'] + new['subscriptions']
                    for h in getattr(e, 'event_handlers', ())]
        destroy = {'publishers': self._destroy_publisher,
                   'subscriptions': self.destroy_subscription, 'timers': self.destroy_timer,
                   'clients': self.destroy_client, 'services': self.destroy_service,
                   'waitables': self._destroy_waitable}
        for kind in ENTITY_KINDS:
            for entity in new[kind]:
                if all(entity is not h for h in handlers):
                    self._configured.append(functools.partial(destroy[kind], entity))

    def _destroy_publisher(self, pub: Any) -> None:
        if isinstance(pub, LifecyclePublisher):
            self.destroy_lifecycle_publisher(pub)
        else:
            self.destroy_publisher(pub)

    def _destroy_waitable(self, waitable: Any) -> None:
        if hasattr(waitable, 'destroy'):     # action servers and clients remove themselves
            waitable.destroy()
        else:
            self.remove_waitable(waitable)

    def destroy_with(self, destroy: Callable[[], Any]) -> None:
        """Have `destroy_configured()` call `destroy` too, after the entities: for what
        on_configure makes that is not an entity of this node (an Intake). Outside
        on_configure: ignored."""
        if self._recording:
            self._configured.append(destroy)

    def destroy_configured(self) -> None:
        """Destroy everything on_configure created: its action servers, services, clients,
        timers, subscriptions, publishers, then what it handed to `destroy_with`."""
        while self._configured:
            destroy = self._configured.pop()
            try:
                destroy()
            except Exception as exc:  # one failure must not leave the others alive
                self.get_logger().warning(f'destroying {destroy!r} failed: {exc!r}')

    @property
    def is_active(self) -> bool:
        """True from a successful activate until deactivate, cleanup, shutdown or error."""
        return self._active

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the lifecycle publishers; then `is_active` (extend, calling super)."""
        result = super().on_activate(state)
        self._active = result == TransitionCallbackReturn.SUCCESS
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Clear `is_active`, disable the lifecycle publishers (extend, calling super)."""
        self._active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self.teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self.teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self.teardown()
        return TransitionCallbackReturn.SUCCESS

    def teardown(self) -> None:
        """Undo on_configure, so that configure can run again (`is_active` is already
        False). Override to stop threads before `super().teardown()`, which destroys what
        on_configure created, and to release the engine after it."""
        self.destroy_configured()

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
