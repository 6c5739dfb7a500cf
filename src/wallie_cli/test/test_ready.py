"""`wallie ready`: true once assistant/state says ready (transient local), in its namespace."""

from __future__ import annotations


def test_ready_from_the_latched_state_and_only_in_its_namespace(probe):
    from wallie_cli.commands.ready import wait_ready
    from wallie_common.qos import STATE_QOS
    from wallie_interfaces.msg import AssistantState
    pub = probe.publisher('assistant/state', AssistantState, STATE_QOS)
    ok, detail = wait_ready(1.0)
    assert not ok and 'no assistant/state' in detail
    pub.publish(AssistantState(ready=False, detail='llm: configuring'))
    ok, detail = wait_ready(5.0)        # waits it out: the state is not ready
    assert not ok and detail == 'llm: configuring'
    pub.publish(AssistantState(ready=True, detail=''))
    assert wait_ready(10.0) == (True, 'ready')         # a late joiner gets the latched state
    assert wait_ready(1.0, namespace='/robot2')[0] is False
