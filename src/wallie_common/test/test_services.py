"""wallie_common.services.call against a scripted client (the glue; graph tests use rclpy)."""

import threading

import pytest

from wallie_common.services import ServiceCallError, call


class Future:
    """Like rclpy's: a callback added after completion runs at once."""

    def __init__(self):
        self._cb, self._result, self._done = [], None, False

    def add_done_callback(self, cb):
        self._cb.append(cb)
        if self._done:
            cb(self)

    def set_result(self, value):
        self._result, self._done = value, True
        for cb in list(self._cb):
            cb(self)

    def result(self):
        return self._result


class Client:
    """Ready after `ready_after` polls; answers request number `answer_on` after `delay_s`."""

    srv_name = '/x/get_state'

    def __init__(self, ready_after=0, answer_on=1, delay_s=0.0):
        self.ready_after, self.answer_on, self.delay_s = ready_after, answer_on, delay_s
        self.polls = self.sent = 0
        self.removed = []

    def service_is_ready(self):
        self.polls += 1
        return self.polls > self.ready_after

    def call_async(self, request):
        self.sent += 1
        fut = Future()
        if self.sent == self.answer_on:
            threading.Timer(self.delay_s, fut.set_result, args=(('ok', request),)).start()
        return fut

    def remove_pending_request(self, fut):
        self.removed.append(fut)


def test_waits_for_the_server_then_returns_the_answer():
    c = Client(ready_after=2, delay_s=0.05)
    assert call(c, 'req', timeout=2.0) == ('ok', 'req')
    assert c.sent == 1 and not c.removed


def test_no_server_and_no_answer_raise_with_the_service_name():
    with pytest.raises(ServiceCallError, match='/x/get_state not available'):
        call(Client(ready_after=10**9), 'req', timeout=0.2)
    c = Client(answer_on=0)
    with pytest.raises(ServiceCallError, match='no answer from /x/get_state'):
        call(c, 'req', timeout=0.3)
    assert c.sent == 1 and len(c.removed) == 1      # the pending request is dropped


def test_resend_reaches_a_server_that_lost_the_first_request():
    c = Client(answer_on=2)
    assert call(c, 'req', timeout=2.0, resend_s=0.2) == ('ok', 'req')
    assert c.sent == 2 and len(c.removed) == 1
    c = Client(answer_on=2)
    with pytest.raises(ServiceCallError):           # without resend the first loss is final
        call(c, 'req', timeout=0.5)
    assert c.sent == 1


def test_abort_ends_the_wait():
    flag = threading.Event()
    threading.Timer(0.1, flag.set).start()
    with pytest.raises(ServiceCallError, match='aborted'):
        call(Client(answer_on=0), 'req', timeout=5.0, abort=flag.is_set)
