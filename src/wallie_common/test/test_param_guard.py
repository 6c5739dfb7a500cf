"""StageNode parameters never claim what is not running (in process, real rclpy node).

A value that cannot work is refused by the on-set callback with the node's reason; a value
that passed but then failed to apply is put back, reported at ERROR, and not applied again.
"""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.parameter import Parameter

from wallie_common import params as P
from wallie_common.node_base import StageNode

AVAILABLE = {'small', 'large', 'broken'}


class ModelNode(StageNode):
    PARAMS = (
        P.Param('model', 'small', 'Model id.', reload=True),
        P.Param('gain', 1.0, 'Live gain.', min=0.0, max=2.0),
    )

    def __init__(self, **kwargs):
        super().__init__('model_node', **kwargs)
        self.running = 'small'
        self.applied: list[dict] = []

    def check_params(self, new):
        if 'model' in new and new['model'] not in AVAILABLE:
            return f"model {new['model']!r} is not in the store"
        return None

    def on_params_changed(self, changed):
        self.applied.append(dict(changed))
        if 'model' in changed:
            if changed['model'] == 'broken':      # there, but does not load
                self.revert_params(dict(self.previous_params), changed,
                                   f"model {changed['model']!r} does not load")
            else:
                self.running = changed['model']


@pytest.fixture
def node(ros_env):
    import rclpy
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    n = ModelNode(context=ctx)
    yield n
    n.destroy_node()
    rclpy.try_shutdown(context=ctx)


def value(node, name):
    return node.get_parameter(name).value


def test_a_model_not_in_the_store_is_refused_with_the_reason(node):
    res, = node.set_parameters([Parameter('model', value='no-such-model')])
    assert not res.successful and "'no-such-model' is not in the store" in res.reason
    assert value(node, 'model') == 'small' and node.params['model'] == 'small'
    assert node.applied == []


def test_a_refused_model_refuses_the_whole_batch(node):
    res = node.set_parameters_atomically([Parameter('gain', value=0.5),
                                          Parameter('model', value='nope')])
    assert not res.successful
    assert value(node, 'gain') == 1.0 and value(node, 'model') == 'small'


def test_a_model_that_fails_to_load_is_put_back_and_reported(node):
    res, = node.set_parameters([Parameter('model', value='broken')])
    assert res.successful                      # it passed the check; the load failed
    assert value(node, 'model') == 'small' == node.running
    assert node.params['model'] == 'small'
    assert node.diag.level == DiagnosticStatus.ERROR
    assert "'broken' does not load" in node.diag.message
    assert node.applied == [{'model': 'broken'}]   # the revert is not applied again


def test_a_good_model_after_a_failed_one_applies(node):
    node.set_parameters([Parameter('model', value='broken')])
    res, = node.set_parameters([Parameter('model', value='large')])
    assert res.successful and value(node, 'model') == 'large' == node.running


def test_revert_leaves_a_newer_value_alone(node):
    node.set_parameters([Parameter('model', value='large')])
    # a late failure report for an older change must not undo the newer one
    node.revert_params({'model': 'small'}, {'model': 'broken'}, 'late failure')
    assert value(node, 'model') == 'large'
    assert node.diag.level == DiagnosticStatus.ERROR


def test_table_rules_still_apply(node):
    res, = node.set_parameters([Parameter('gain', value=5.0)])
    assert not res.successful and 'out of range' in res.reason
    res, = node.set_parameters([Parameter('model', value=3)])
    assert not res.successful and 'type' in res.reason.lower()
