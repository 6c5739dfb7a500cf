"""StageNode records what on_configure creates and destroys it in one call (in process).

Cleanup, shutdown and error leave exactly the entities the node had before configure; a
configure that fails leaves nothing behind; `is_active` and the lifecycle publishers follow
activate/deactivate.
"""

from __future__ import annotations

import pytest
from rclpy.action import ActionServer
from rclpy.lifecycle import TransitionCallbackReturn
from std_msgs.msg import String
from std_srvs.srv import Trigger

from wallie_common.node_base import StageNode
from wallie_interfaces.action import Listen

OK = TransitionCallbackReturn.SUCCESS


class Recorder(StageNode):
    def __init__(self, **kwargs):
        super().__init__('recorder', **kwargs)
        self.fail_with: TransitionCallbackReturn | None = None
        self.raise_in_configure = False
        self.closed = 0
        self.lifecycle_pub = None
        self.torn_down = 0

    def on_configure(self, state):
        self.create_publisher(String, 'plain', 10)
        self.lifecycle_pub = self.create_lifecycle_publisher(String, 'managed', 10)
        self.create_subscription(String, 'input', lambda msg: None, 10)
        self.create_timer(10.0, lambda: None)
        self.create_service(Trigger, 'poke', lambda req, res: res)
        self.create_client(Trigger, 'other')
        ActionServer(self, Listen, 'listen', lambda goal: Listen.Result())
        self.destroy_with(self._close)
        if self.raise_in_configure:
            raise RuntimeError('configure blew up')
        return self.fail_with or OK

    def _close(self):
        self.closed += 1

    def teardown(self):
        self.torn_down += 1
        super().teardown()


def entities(node) -> dict:
    return {
        'publishers': sorted(p.topic_name for p in node.publishers),
        'subscriptions': sorted(s.topic_name for s in node.subscriptions),
        'services': sorted(s.srv_name for s in node.services),
        'clients': sorted(c.srv_name for c in node.clients),
        'timers': len(list(node.timers)),
        'waitables': len(list(node.waitables)),
    }


@pytest.fixture
def node(ros_context):
    n = Recorder(context=ros_context)
    yield n
    n.destroy_node()


def test_cleanup_destroys_what_configure_created(node):
    bare = entities(node)
    assert node.trigger_configure() == OK
    configured = entities(node)
    assert configured != bare
    assert '/managed' in configured['publishers'] and '/plain' in configured['publishers']
    assert configured['timers'] == bare['timers'] + 1
    assert configured['waitables'] > bare['waitables']       # the action server, QoS events
    for _ in range(2):
        assert node.trigger_cleanup() == OK
        assert entities(node) == bare
        assert node.trigger_configure() == OK
        assert entities(node) == configured
    assert node.trigger_activate() == OK
    assert node.trigger_shutdown() == OK
    assert entities(node) == bare
    assert node.closed == 3 and node.torn_down == 3
    assert '/diagnostics' in bare['publishers']       # the base's own entities stay


@pytest.mark.parametrize('outcome', [TransitionCallbackReturn.FAILURE, 'raise'])
def test_a_configure_that_does_not_succeed_leaves_nothing_behind(node, outcome):
    bare = entities(node)
    if outcome == 'raise':
        node.raise_in_configure = True
    else:
        node.fail_with = outcome
    assert node.trigger_configure() != OK
    assert entities(node) == bare and node.closed == 1
    node.raise_in_configure, node.fail_with = False, None
    assert node.trigger_configure() == OK              # and it can be configured again
    assert entities(node) != bare


def test_is_active_and_lifecycle_publishers_follow_the_transitions(node):
    assert not node.is_active
    assert node.trigger_configure() == OK
    assert not node.is_active and not node.lifecycle_pub.is_activated
    assert node.trigger_activate() == OK
    assert node.is_active and node.lifecycle_pub.is_activated
    assert node.trigger_deactivate() == OK
    assert not node.is_active and not node.lifecycle_pub.is_activated
    assert node.trigger_activate() == OK
    assert node.trigger_shutdown() == OK
    assert not node.is_active


def test_entities_made_outside_configure_are_not_recorded(node):
    assert node.trigger_configure() == OK
    extra = node.create_publisher(String, 'later', 10)
    assert node.trigger_cleanup() == OK
    assert '/later' in [p.topic_name for p in node.publishers]
    node.destroy_publisher(extra)
