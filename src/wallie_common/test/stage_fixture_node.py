"""A minimal StageNode used by the harness tests: publishes AssistantState when active."""

import time

from rclpy.lifecycle import TransitionCallbackReturn

from wallie_common import params as P
from wallie_common.node_base import StageNode
from wallie_common.qos import EVENT_QOS
from wallie_common.runtime import main_for
from wallie_interfaces.msg import AssistantState


class FixtureNode(StageNode):
    PARAMS = (
        P.Param('rate_hz', 20.0, 'Publishing rate.', min=1.0, max=100.0),
        P.Param('label', 'fixture', 'Text put in the detail field.'),
        P.Param('shutdown_busy_s', 0.0, 'The shutdown transition blocks this long (an engine '
                'that is slow to close).', min=0.0, max=600.0),
    )

    def __init__(self):
        super().__init__('fixture')
        self._pub = None
        self._timer = None

    def on_configure(self, state):
        self._pub = self.create_lifecycle_publisher(AssistantState, 'fixture/state', EVENT_QOS)
        self.diag.ok('configured')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        self._timer = self.create_timer(1.0 / self.params['rate_hz'], self._tick)
        return super().on_activate(state)

    def on_deactivate(self, state):
        self.destroy_timer(self._timer)
        return super().on_deactivate(state)

    def on_shutdown(self, state):
        time.sleep(self.params['shutdown_busy_s'])
        return TransitionCallbackReturn.SUCCESS

    def _tick(self):
        self._pub.publish(AssistantState(state=AssistantState.IDLE, detail=self.params['label']))

    def on_params_changed(self, changed):
        if 'rate_hz' in changed and self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(1.0 / changed['rate_hz'], self._tick)


if __name__ == '__main__':
    main_for(FixtureNode)()
