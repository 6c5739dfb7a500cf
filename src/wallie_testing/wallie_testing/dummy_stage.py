"""A small real lifecycle stage for the bringup tests (starts in ~0.5 s, no models).

Run it under any stage name: ``python dummy_stage.py --ros-args -r __node:=asr``.
It is a real wallie_common StageNode run by wallie_common.runtime.main_for, so it has the
parameters, diagnostics heartbeat and shutdown behaviour of the real stages. Extras:
- every ChangeState it receives is appended (JSON line) to ``dummy.transition_log`` with the
  state it arrived in and whether it was valid there; an invalid *id* still reaches rclpy,
  which on Jazzy 7.1.6 kills the process (the behaviour the manager must never trigger);
- ``dummy.configure_s`` makes configure slow; ``dummy.fail_configure`` makes it fail;
- ``dummy.level`` is a live-tunable value with a range (for the invalid-parameter test);
- it keeps a toy conversation history with the real LLM node's protocol: published on
  ``llm/history`` (JSON, transient local) after every change, replaced by setting
  ``llm.history_json``; ``dummy.say`` appends an entry (as if a turn happened).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from rclpy.lifecycle import TransitionCallbackReturn
from std_msgs.msg import String

from wallie_common import params as P
from wallie_common.node_base import StageNode
from wallie_common.qos import STATE_QOS
from wallie_common.runtime import main_for


class DummyStage(StageNode):
    """A lifecycle stage without a model, with knobs for slow, failing or crashing transitions."""

    PARAMS = (
        P.Param('dummy.configure_s', 0.0, 'Seconds configure takes.', min=0.0, max=120.0),
        P.Param('dummy.fail_configure', False, 'Configure returns FAILURE.'),
        P.Param('dummy.crash_on_configure', False, 'Configure kills the process (exit 3).'),
        P.Param('dummy.level', 0.5, 'A live-tunable value in [0, 1].', min=0.0, max=1.0),
        P.Param('dummy.mode', 'a', 'A choice.', choices=('a', 'b', 'c')),
        P.Param('dummy.say', '', 'Append this to the toy conversation history.'),
        P.Param('dummy.transition_log', '', 'JSON-lines file of received transitions.',
                read_only=True),
        P.Param('llm.history_json', '', 'Replace the toy history (JSON list).'),
    )

    def __init__(self) -> None:
        super().__init__('dummy')
        # Also declare the real parameters the brief's config keys map to for this name,
        # so the configuration tests can check where config.toml / WALLIE_* values land.
        from wallie_bringup.config import KEYS
        for key in KEYS:
            for node, param in key.targets:
                if node == self.get_name() and not self.has_parameter(param):
                    self.declare_parameter(param, key.type())
        self.history: list[str] = []
        self._hist_pub = self.create_publisher(String, 'llm/history', STATE_QOS)
        self.diag.ok('unconfigured', pid=os.getpid())

    # Called by rclpy's change_state service handler and by trigger_*(): log what arrives.
    def _LifecycleNodeMixin__change_state(self, transition_id: int):  # noqa: N802
        current = self._state_machine.current_state[1]
        valid = any(t[0] == transition_id for t in self._state_machine.available_transitions)
        path = self.params.get('dummy.transition_log')
        if path:
            with open(path, 'a') as fh:
                fh.write(json.dumps({'node': self.get_name(), 'pid': os.getpid(),
                                     'time': time.time(), 'state': current,
                                     'transition': transition_id, 'valid': valid}) + '\n')
        return super()._LifecycleNodeMixin__change_state(transition_id)

    def on_configure(self, state) -> TransitionCallbackReturn:
        time.sleep(self.params['dummy.configure_s'])
        if self.params['dummy.crash_on_configure']:
            os._exit(3)
        if self.params['dummy.fail_configure']:
            self.diag.error('configure failed on purpose')
            return TransitionCallbackReturn.FAILURE
        self.diag.ok('inactive', pid=os.getpid())
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.diag.ok('active', pid=os.getpid())
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.diag.ok('inactive', pid=os.getpid())
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.diag.ok('unconfigured', pid=os.getpid())
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.SUCCESS

    def on_params_changed(self, changed) -> None:
        if changed.get('dummy.say'):
            self.history.append(changed['dummy.say'])
            self._hist_pub.publish(String(data=json.dumps(self.history)))
        if changed.get('llm.history_json'):
            self.history = list(json.loads(changed['llm.history_json']))
            self.get_logger().info(f'history restored: {len(self.history)} entries')
            self.diag.value('history', json.dumps(self.history))
            self._hist_pub.publish(String(data=json.dumps(self.history)))
        self.diag.value('level', self.params['dummy.level'])


main = main_for(DummyStage)


if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).parent))
    main()
