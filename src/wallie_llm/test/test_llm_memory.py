"""Conversation memory: budget, trimming, forgetting, idle timeout, export/import."""

import json

import pytest

from wallie_llm.memory import (
    FORGET_LAST,
    HISTORY_FORMAT,
    RESET,
    ConversationMemory,
    HistoryFormatError,
    voice_command,
)


def words(text: str) -> int:
    """A transparent token counter: one token per word."""
    return len(text.split())


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(**kw) -> ConversationMemory:
    kw.setdefault('count_tokens', words)
    return ConversationMemory('You are Wallie.', **kw)


def prompt_tokens(messages) -> int:
    return sum(words(m['content']) + 5 for m in messages)


def test_prompt_is_system_history_user():
    mem = make()
    mem.add_exchange('t1', 'My name is Ann.', 'Hello Ann.')
    msgs = mem.messages_for('What is my name?')
    assert [m['role'] for m in msgs] == ['system', 'user', 'assistant', 'user']
    assert msgs[0]['content'] == 'You are Wallie.'
    assert msgs[1]['content'] == 'My name is Ann.'
    assert msgs[-1]['content'] == 'What is my name?'


@pytest.mark.parametrize('budget, max_tokens', [(60, 0), (200, 100), (400, 96)])
def test_history_never_overflows_the_budget(budget, max_tokens):
    mem = make(prompt_budget_tokens=budget, history_max_tokens=10_000)
    for i in range(50):
        mem.add_exchange(f't{i}', f'question number {i} ' + 'pad ' * 5,
                         f'answer number {i} ' + 'pad ' * 8)
        msgs = mem.messages_for('and the next question?', reserve_tokens=max_tokens)
        assert prompt_tokens(msgs) + max_tokens <= budget
    if budget < 200:
        return                                      # only the topic note fits
    # the newest exchange survives, the oldest are gone
    contents = [m['content'] for m in mem.messages_for('x', reserve_tokens=max_tokens)]
    assert any('answer number 49' in c for c in contents)
    assert not any('question number 0 ' in c for c in contents[1:])


def test_history_max_tokens_caps_the_history_part():
    mem = make(history_max_tokens=30, prompt_budget_tokens=10_000)
    for i in range(10):
        mem.add_exchange(f't{i}', 'one two three', 'four five six')   # 16 tokens each
    mem.messages_for('next')
    assert len(mem) == 1


def test_dropped_turns_leave_a_topic_note():
    mem = make(history_max_tokens=20, summarize_dropped=True)
    mem.add_exchange('t1', 'Tell me about volcanoes', 'Volcanoes are mountains that erupt.')
    mem.add_exchange('t2', 'And glaciers?', 'Glaciers are rivers of ice.')
    system = mem.messages_for('next')[0]['content']
    assert system.startswith('You are Wallie.')
    assert 'volcanoes' in system
    mem.reset()
    assert mem.messages_for('x')[0]['content'] == 'You are Wallie.'


def test_no_note_when_summaries_are_off():
    mem = make(history_max_tokens=20, summarize_dropped=False)
    mem.add_exchange('t1', 'Tell me about volcanoes', 'Volcanoes are mountains that erupt.')
    mem.add_exchange('t2', 'And glaciers?', 'Glaciers are rivers of ice.')
    assert mem.messages_for('next')[0]['content'] == 'You are Wallie.'


def test_trim_assistant_to_heard_part():
    mem = make()
    mem.add_exchange('t1', 'Tell me a story.', 'Once upon a time. There was a dragon. The end.')
    mem.add_exchange('t2', 'Another?', 'Sure.')
    assert mem.trim_assistant('t1', 'Once upon a time.')
    assert mem.turns()[0].assistant == 'Once upon a time.'
    assert not mem.trim_assistant('unknown', 'x')
    assert mem.trim_assistant('t2', '')             # nothing heard: no assistant message
    assert [m['role'] for m in mem.messages_for('q')] == [
        'system', 'user', 'assistant', 'user', 'user']


def test_forget_last_and_reset():
    mem = make()
    assert not mem.forget_last()
    mem.add_exchange('t1', 'a', 'b')
    mem.add_exchange('t2', 'c', 'd')
    assert mem.forget_last()
    assert [t.turn_id for t in mem.turns()] == ['t1']
    rev = mem.revision
    mem.reset()
    assert len(mem) == 0 and mem.revision > rev
    assert mem.system_prompt == 'You are Wallie.'


def test_idle_timeout_forgets():
    clock = FakeClock()
    mem = make(idle_timeout_s=60, clock=clock)
    mem.add_exchange('t1', 'a', 'b')
    clock.t += 59
    assert not mem.expire_if_idle()
    clock.t += 2
    assert mem.messages_for('q') == [{'role': 'system', 'content': 'You are Wallie.'},
                                     {'role': 'user', 'content': 'q'}]
    assert len(mem) == 0


def test_idle_timeout_zero_never_forgets():
    clock = FakeClock()
    mem = make(idle_timeout_s=0, clock=clock)
    mem.add_exchange('t1', 'a', 'b')
    clock.t += 1e9
    assert not mem.expire_if_idle() and len(mem) == 1


def test_export_import_round_trip():
    mem = make(history_max_tokens=15)
    mem.add_exchange('t1', 'Tell me about volcanoes', 'They erupt.')
    mem.add_exchange('t2', 'Ünïcode ✓ "quotes"', 'Yes.')
    mem.messages_for('x')                           # drops t1 into the topic note
    data = mem.export_json()
    assert json.loads(data)['format'] == HISTORY_FORMAT
    other = make(history_max_tokens=15)
    assert other.import_json(data) == 1
    assert other.turns()[0].user == 'Ünïcode ✓ "quotes"'
    assert other.system_messages() == mem.system_messages()
    assert other.import_json('') == 0 and len(other) == 0


@pytest.mark.parametrize('bad', [
    'not json', '[]', '{"format": "other"}',
    json.dumps({'format': HISTORY_FORMAT, 'turns': [{'user': 1}]}),
    json.dumps({'format': HISTORY_FORMAT, 'turns': 'x'}),
    json.dumps({'format': HISTORY_FORMAT, 'turns': [], 'dropped_topics': [1]}),
    json.dumps({'format': HISTORY_FORMAT, 'turns': [{'user': 'a'}] * 1000}),
])
def test_import_rejects_bad_history_and_keeps_the_old(bad):
    mem = make()
    mem.add_exchange('t1', 'a', 'b')
    with pytest.raises(HistoryFormatError):
        mem.import_json(bad)
    assert len(mem) == 1


@pytest.mark.parametrize('text, command', [
    ('Forget that.', FORGET_LAST),
    ('forget that please', FORGET_LAST),
    ('Wallie, forget what I just said', FORGET_LAST),
    ('Scratch that!', FORGET_LAST),
    ('Please forget everything.', RESET),
    ("Let's start over", None),           # not a whole command phrase we know
    ('Start over.', RESET),
    ('Clear the conversation', RESET),
    ('New conversation', RESET),
    ('Forget that movie, what is the capital of France?', None),
    ('How do I forget that feeling?', None),
    ('What is the capital of France?', None),
])
def test_voice_commands(text, command):
    assert voice_command(text) == command
