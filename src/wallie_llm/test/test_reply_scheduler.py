"""ReplyScheduler without ROS: a fake generator whose chunks the test lets out one by one."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from wallie_llm.config import SchedulerConfig
from wallie_llm.memory import ConversationMemory
from wallie_llm.reply import ReplyResult
from wallie_llm.scheduler import QUEUE_SIZE, ReplyEvents, ReplyJob, ReplyScheduler

REPLIES = {
    'What is the capital of France?': ['The capital', 'of France is Paris.'],
    'What is the capital of Japan?': ['The capital', 'of Japan is Tokyo.'],
    'What is the capital of France? I mean Japan.': ['Then it is', 'Tokyo.'],
    'Tell me a story.': ['Once upon a time,', 'there was a dragon.', 'It flew away.'],
}
STORY = 'Tell me a story.'
FRANCE = 'What is the capital of France?'
JAPAN = 'What is the capital of Japan?'


class FakeGenerator:
    """Stands in for ReplyGenerator: scripted chunks, each let out by `allow()` when gated."""

    def __init__(self, memory: ConversationMemory, gated: bool = False) -> None:
        self.memory = memory
        self.gated = gated
        self._tokens = threading.Semaphore(0)
        self.runs: list[tuple[str, str, str]] = []          # (turn, text, not_heard)
        self.prepared = 0
        self.before_commit = None                            # called in commit, before memory

    def allow(self, n: int = 1) -> None:
        for _ in range(n):
            self._tokens.release()

    def prepare(self) -> None:
        self.prepared += 1

    def run(self, turn_id, user_text, stop_event, on_chunk=None, on_first_token=None,
            not_heard=''):
        self.runs.append((turn_id, user_text, not_heard))
        res = ReplyResult(turn_id, user_text, start_ns=time.time_ns())
        chunks = ['Say that again?'] if not_heard else REPLIES.get(user_text, ['Okay.'])
        for i, chunk in enumerate(chunks):
            while self.gated and not self._tokens.acquire(timeout=0.005):
                if stop_event.is_set():
                    break
            if stop_event.is_set():
                break
            if i == 0 and on_first_token is not None:
                on_first_token(time.time_ns())
            res.chunks.append(chunk)
            on_chunk(i, chunk, False)
        res.finish = ('cancelled' if stop_event.is_set() else
                      'not_heard' if not_heard else 'stop')
        on_chunk(len(res.chunks), '', True)
        return res

    def commit(self, res: ReplyResult, assistant_text: str | None = None) -> None:
        if self.before_commit is not None:
            self.before_commit(res)
        if res.finish != 'not_heard':
            self.memory.add_exchange(res.turn_id, res.user_text,
                                     res.text if assistant_text is None else assistant_text)


class Recorder(ReplyEvents):
    def __init__(self) -> None:
        self.chunks: list[tuple[str, int, str, bool, bool]] = []
        self.tokens: list[tuple[str, int | None]] = []
        self.histories: list[str] = []
        self.committed_turns: list[str] = []
        self.counts: Counter[str] = Counter()
        self.warnings: list[str] = []

    def chunk(self, job, index, text, final, first):
        self.chunks.append((job.turn_id, index, text, final, first))

    def first_token(self, job, stamp_ns):
        self.tokens.append((job.turn_id, stamp_ns))

    def history(self, data):
        self.histories.append(data)

    def committed(self, job, result):
        self.committed_turns.append(job.turn_id)

    def count(self, key):
        self.counts[key] += 1

    def warn(self, key, text):
        self.warnings.append(key)


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.002)
    return predicate()


class Rig:
    def __init__(self, gated=False, **config):
        self.memory = ConversationMemory('You are a test.')
        self.events = Recorder()
        self.sched = ReplyScheduler(self.memory, SchedulerConfig(**config), self.events)
        self.gen = FakeGenerator(self.memory, gated)
        self.sched.generator = self.gen
        self.sched.start()

    def say(self, turn, text, final=True, early=False, unreliable=''):
        self.sched.on_transcript(turn, text, final=final, early=early, unreliable=unreliable)

    def chunks(self, turn):
        return [c for c in self.events.chunks if c[0] == turn]

    def text(self, turn):
        return ' '.join(c[2] for c in self.chunks(turn) if c[2])

    def wait_final(self, turn):
        assert wait_until(lambda: any(c[3] for c in self.chunks(turn))), self.events.chunks
        return self.chunks(turn)

    def wait_idle(self):
        assert wait_until(self.sched.idle), 'worker still busy'

    def wait_result(self, job):
        assert wait_until(lambda: job.result is not None)
        return job.result

    def users(self):
        return [t.user for t in self.memory.turns()]

    def assistant(self):
        return self.memory.turns()[-1].assistant

    def published(self):
        return json.loads(self.events.histories[-1])['turns']


@pytest.fixture
def rig():
    made = []

    def make(**kw):
        r = Rig(**kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.sched.stop()


# ------------------------------------------------------------------ plain turns
def test_a_final_is_answered_in_order_and_committed(rig):
    r = rig()
    r.say('t1', FRANCE)
    chunks = r.wait_final('t1')
    assert chunks == [('t1', 0, 'The capital', False, True),
                      ('t1', 1, 'of France is Paris.', False, False),
                      ('t1', 2, '', True, False)]
    r.wait_idle()
    assert r.events.tokens[0][0] == 't1' and r.events.tokens[0][1] > 0
    assert r.events.committed_turns == ['t1']
    assert r.published()[-1]['assistant'] == 'The capital of France is Paris.'
    assert r.gen.prepared == 1


def test_partials_empty_duplicate_and_unreliable_finals(rig):
    r = rig()
    r.say('p', 'What is the capital', final=False)         # a fragment: never answered
    r.say('e', '   ')
    r.say('d', FRANCE)
    r.wait_final('d')
    r.wait_idle()
    r.say('d', FRANCE)                                     # a second final of the same turn
    r.say('u', 'Which planet is normal marine planet?', final=False, early=True,
          unreliable='low_logprob')
    assert r.sched.speculative_job('u') is None
    r.say('u', 'Which planet is normal marine planet?', unreliable='low_logprob')
    r.wait_final('u')
    assert r.text('u') == 'Say that again?'
    r.wait_idle()
    assert {c[0] for c in r.events.chunks} == {'d', 'u'}
    assert [t[2] for t in r.gen.runs] == ['', 'low_logprob']
    assert r.users() == [FRANCE]                           # the not-heard turn left no trace
    assert 'duplicate_final' in r.events.warnings
    assert r.events.counts['not_heard.low_logprob'] == 1


def test_a_full_queue_drops_the_job_and_marks_it_done(rig):
    r = rig(gated=True)
    r.say('busy', STORY)
    assert wait_until(lambda: r.gen.runs)                  # the worker holds it
    jobs = [ReplyJob(f'a{i}', FRANCE, 'ask', False) for i in range(QUEUE_SIZE + 1)]
    accepted = [r.sched.submit(j) for j in jobs]
    assert accepted == [True] * QUEUE_SIZE + [False]
    assert jobs[-1].done.is_set() and not jobs[0].done.is_set()
    assert 'queue_full' in r.events.warnings


# ------------------------------------------------------------------ speculation
def test_speculation_confirmed_by_the_final_is_released_not_rerun(rig):
    r = rig()
    r.say('s1', FRANCE, final=False, early=True)
    job = r.sched.speculative_job('s1')
    assert r.wait_result(job).text == 'The capital of France is Paris.'
    assert r.chunks('s1') == [] and r.events.tokens == []  # generated, held back
    assert len(r.memory) == 0                              # nothing committed yet
    r.say('s1', 'what is the capital of France')           # the same words
    assert r.text('s1') == 'The capital of France is Paris.'
    assert r.events.tokens == [('s1', None)]               # stamped when it became real
    r.wait_idle()
    assert len(r.gen.runs) == 1
    assert r.users() == [FRANCE]
    assert r.events.counts['speculative.used'] == 1


def test_speculation_is_discarded_by_a_final_with_other_words(rig):
    r = rig()
    r.say('s2', FRANCE, final=False, early=True)
    spec = r.sched.speculative_job('s2')
    r.say('s2', JAPAN)
    r.wait_final('s2')
    assert r.text('s2') == 'The capital of Japan is Tokyo.'
    r.wait_idle()
    assert spec.discarded.is_set()
    assert 'Paris' not in ' '.join(c[2] for c in r.events.chunks)
    assert r.users() == [JAPAN]
    assert r.events.counts['speculative.discarded'] == 1


def test_speculation_is_dropped_when_the_user_goes_on(rig):
    r = rig()
    r.say('s3', FRANCE, final=False, early=True)
    spec = r.sched.speculative_job('s3')
    r.sched.drop_speculation('s3')
    assert r.sched.speculative_job('s3') is None and spec.discarded.is_set()
    r.say('s3', JAPAN)
    r.wait_final('s3')
    r.wait_idle()
    assert r.text('s3') == 'The capital of Japan is Tokyo.'
    assert r.users() == [JAPAN]


def test_speculation_never_confirmed_expires(rig):
    r = rig(speculative_wait_s=0.1)
    r.say('s4', FRANCE, final=False, early=True)
    job = r.sched.speculative_job('s4')
    assert wait_until(lambda: job.done.is_set())
    assert job.result.cancelled and job.discarded.is_set()
    assert r.sched.speculative_job('s4') is None
    assert r.events.chunks == [] and len(r.memory) == 0


def test_a_complete_partial_starts_and_the_early_final_keeps_it(rig):
    r = rig()
    r.say('p1', 'What is the capital', final=False)
    assert r.sched.speculative_job('p1') is None
    r.say('p1', FRANCE, final=False)
    job = r.sched.speculative_job('p1')
    assert job.from_partial
    r.say('p1', FRANCE, final=False, early=True)
    assert r.sched.speculative_job('p1') is job            # same words: kept
    r.say('p1', FRANCE)
    r.wait_final('p1')
    assert r.text('p1') == 'The capital of France is Paris.'
    assert len(r.gen.runs) == 1
    assert r.events.counts['speculative.from_partial'] == 1
    assert r.events.counts['speculative.used'] == 1


def test_an_early_final_with_other_words_replaces_a_partials_reply(rig):
    r = rig()
    other = 'What is the capital of France? I mean Japan.'
    r.say('p2', FRANCE, final=False)
    r.say('p2', other, final=False, early=True)
    early_job = r.sched.speculative_job('p2')
    assert not early_job.from_partial
    r.say('p2', 'Really?', final=False)                   # a partial never replaces it
    assert r.sched.speculative_job('p2') is early_job
    r.say('p2', other)
    r.wait_final('p2')
    r.wait_idle()
    assert r.text('p2') == 'Then it is Tokyo.'
    assert r.users() == [other]


@pytest.mark.parametrize('config', [{'speculative_partials': False}, {'speculative': False}])
def test_speculation_turned_off(rig, config):
    r = rig(**config)
    r.say('p3', FRANCE, final=False)
    assert r.sched.speculative_job('p3') is None
    if not config.get('speculative', True):
        r.say('p3', FRANCE, final=False, early=True)
        assert r.sched.speculative_job('p3') is None
    r.say('p3', FRANCE)
    r.wait_final('p3')
    assert r.text('p3') == 'The capital of France is Paris.'


# ------------------------------------------------------------------ interrupts
def test_interrupt_by_turn_id_stops_that_reply(rig):
    r = rig(gated=True)
    r.say('i1', STORY)
    r.gen.allow(1)
    assert wait_until(lambda: r.chunks('i1'))
    r.sched.interrupt('other')                             # another turn: no effect
    r.gen.allow(1)
    assert wait_until(lambda: len(r.chunks('i1')) == 2)
    r.sched.interrupt('i1')
    r.gen.allow(5)
    chunks = r.wait_final('i1')
    assert [c[2] for c in chunks] == ['Once upon a time,', 'there was a dragon.', '']
    r.wait_idle()
    assert r.assistant() == 'Once upon a time, there was a dragon.'


def test_interrupt_without_turn_id_stops_the_current_reply_only(rig):
    r = rig(gated=True)
    r.say('i2', STORY)
    ask = ReplyJob('ask-1', JAPAN, 'ask', False)
    assert r.sched.submit(ask)
    r.gen.allow(1)
    assert wait_until(lambda: r.chunks('i2'))
    r.sched.interrupt()
    assert [c[2] for c in r.wait_final('i2')] == ['Once upon a time,', '']
    r.gen.allow(5)
    assert r.wait_result(ask).text == 'The capital of Japan is Tokyo.'


def test_interrupt_of_a_waiting_speculation_discards_it(rig):
    r = rig()
    r.say('i3', FRANCE, final=False, early=True)
    job = r.sched.speculative_job('i3')
    r.wait_result(job)
    r.sched.interrupt('i3')
    assert job.discarded.is_set() and r.sched.speculative_job('i3') is None
    r.say('i3', FRANCE)                                    # the final now starts afresh
    r.wait_final('i3')
    assert r.text('i3') == 'The capital of France is Paris.'
    assert len(r.gen.runs) == 2


def test_a_speculation_stopped_while_waiting_does_not_block_the_next_turn(rig):
    r = rig(speculative_wait_s=30.0)
    r.say('s5', FRANCE, final=False, early=True)
    r.wait_result(r.sched.speculative_job('s5'))
    r.sched.interrupt()                                    # it is the current job
    t0 = time.monotonic()
    r.say('s6', JAPAN)
    r.wait_final('s6')
    assert time.monotonic() - t0 < 2.0
    assert r.chunks('s5') == []


def test_a_new_voice_turn_supersedes_voice_replies_but_not_asks(rig):
    r = rig(gated=True)
    r.say('a', STORY)
    r.gen.allow(1)
    assert wait_until(lambda: r.chunks('a'))
    ask = ReplyJob('ask-2', FRANCE, 'ask', False)
    r.sched.submit(ask)
    r.say('b', JAPAN)
    r.gen.allow(20)
    assert r.wait_final('a')[-1][2] == ''
    assert r.text('a') == 'Once upon a time,'
    assert r.wait_result(ask).text == 'The capital of France is Paris.'
    r.wait_final('b')
    assert r.text('b') == 'The capital of Japan is Tokyo.'


def test_stop_all_stops_everything(rig):
    r = rig(gated=True)
    r.say('y', FRANCE, final=False, early=True)
    spec = r.sched.speculative_job('y')
    assert wait_until(lambda: r.gen.runs)                  # generating, waiting for tokens
    ask = ReplyJob('ask-3', JAPAN, 'ask', False)
    r.sched.submit(ask)
    r.sched.stop_all()
    assert r.wait_result(ask).cancelled
    r.wait_idle()
    assert spec.discarded.is_set() and r.sched.speculative_job('y') is None
    assert r.chunks('y') == [] and [t[0] for t in r.gen.runs] == ['y']


# ------------------------------------------------------------------ heard part (FLUSHED)
def test_flushed_after_the_commit_trims_the_history(rig):
    r = rig()
    r.say('f1', STORY)
    r.wait_final('f1')
    r.wait_idle()
    assert r.assistant() == 'Once upon a time, there was a dragon. It flew away.'
    r.sched.flushed('f1', 1, 0.5)            # all of chunk 0, half of chunk 1 heard
    assert r.assistant() == 'Once upon a time, there was...'
    assert r.published()[-1]['assistant'] == 'Once upon a time, there was...'


def test_flushed_before_the_commit_is_applied_at_the_commit(rig):
    r = rig(gated=True)
    r.say('f2', STORY)
    r.gen.allow(1)
    assert wait_until(lambda: r.chunks('f2'))
    r.sched.flushed('f2', 0, 0.5)            # the player stopped half-way through chunk 0
    r.sched.interrupt('f2')
    r.wait_final('f2')
    r.wait_idle()
    assert r.assistant() == 'Once upon...'
    assert r.published()[-1]['assistant'] == 'Once upon...'


def test_flushed_during_the_commit_waits_for_the_exchange(rig):
    """A FLUSHED that comes while the turn is being committed must trim it: the chunks and
    the exchange land under one lock, so it can never find the chunks without the exchange
    (it would trim nothing and the whole reply would stay in the history)."""
    r = rig()
    flushers = []

    def flush_now(res):
        t = threading.Thread(target=r.sched.flushed, args=(res.turn_id, 0, 0.5))
        t.start()
        t.join(0.3)                          # time enough to finish if nothing holds it
        flushers.append(t)

    r.gen.before_commit = flush_now
    r.say('f3', STORY)
    r.wait_final('f3')
    r.wait_idle()
    assert flushers
    flushers[0].join(5.0)
    assert r.assistant() == 'Once upon...'
    assert r.published()[-1]['assistant'] == 'Once upon...'


def test_reset_forgets_the_history_and_pending_flushes(rig):
    r = rig(gated=True)
    r.say('r1', STORY)
    r.gen.allow(1)
    assert wait_until(lambda: r.chunks('r1'))
    r.sched.flushed('r1', 0, 0.5)
    r.sched.reset()                          # forgets the pending FLUSHED too
    r.gen.allow(5)
    r.wait_final('r1')
    r.wait_idle()
    assert r.assistant() == 'Once upon a time, there was a dragon. It flew away.'
    assert r.sched.reset() == 1 and len(r.memory) == 0
    assert r.published() == []


# ------------------------------------------------------------------ history hand-out
def test_history_goes_out_once_per_change(rig):
    r = rig()
    r.sched.publish_history()
    r.sched.publish_history()
    assert len(r.events.histories) == 1
    r.sched.publish_history(force=True)
    assert len(r.events.histories) == 2
    r.sched.config = SchedulerConfig(publish_history=False)
    r.memory.add_exchange('h', 'Hi.', 'Hello.')
    r.sched.tick()
    assert len(r.events.histories) == 2
    r.sched.config = SchedulerConfig()
    r.sched.tick()                           # turned back on: the change goes out
    assert r.published()[-1]['assistant'] == 'Hello.'


def test_history_hand_out_is_serialized_newest_last():
    """Two threads publish at once: the older export must not be handed out last (it would
    be the history every late subscriber keeps)."""
    memory = ConversationMemory('You are a test.')
    first_in = threading.Event()
    release = threading.Event()

    class SlowFirst(Recorder):
        def history(self, data):
            if not first_in.is_set():
                first_in.set()
                release.wait(5.0)
            super().history(data)

    events = SlowFirst()
    sched = ReplyScheduler(memory, events=events)
    memory.add_exchange('a', 'Hi.', 'Hello.')
    t1 = threading.Thread(target=sched.publish_history)
    t1.start()
    assert first_in.wait(5.0)
    memory.add_exchange('b', 'Bye.', 'Goodbye.')
    t2 = threading.Thread(target=sched.publish_history)
    t2.start()
    t2.join(0.3)                             # time enough to go out first if nothing holds it
    release.set()
    t1.join(5.0)
    t2.join(5.0)
    assert len(events.histories) == 2
    assert events.histories[-1] == memory.export_json()


def test_import_history_replaces_the_conversation_and_the_prefix(rig):
    r = rig()
    for turn, text in (('t1', FRANCE), ('t2', JAPAN)):
        r.say(turn, text)
        r.wait_final(turn)
    r.wait_idle()
    assert r.gen.prepared == 1               # the prefix is evaluated once, then reused
    data = json.dumps({'format': 'wallie.conversation/1', 'turns': [
        {'turn_id': 'x', 'user': 'My colour is green.', 'assistant': 'Noted.'}]})
    assert r.sched.import_history(data) == 1
    assert r.published() == [{'turn_id': 'x', 'user': 'My colour is green.',
                              'assistant': 'Noted.', 'stamp': 0.0}]
    r.say('t3', FRANCE)
    r.wait_final('t3')
    assert r.gen.prepared == 2               # the new history's prefix is evaluated
