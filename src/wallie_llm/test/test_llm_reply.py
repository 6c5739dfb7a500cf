"""Reply pipeline with a scripted engine: chunks, bounds, cancellation, commands, commit."""

import threading

from llm_fakes import ScriptedEngine

from wallie_llm.config import ChunkerConfig, GenerationConfig
from wallie_llm.memory import ConversationMemory
from wallie_llm.reply import ReplyGenerator, heard_text


def make(replies=None, **gen):
    engine = ScriptedEngine(replies or {})
    engine.load()
    mem = ConversationMemory('You are Wallie.', engine.count_tokens)
    return engine, mem, ReplyGenerator(engine, mem, GenerationConfig(**gen), ChunkerConfig())


def collect(gen, text, stop=None, turn='t1'):
    out = []
    res = gen.run(turn, text, stop or threading.Event(),
                  on_chunk=lambda i, t, f: out.append((i, t, f)))
    return res, out


def test_chunks_are_shaped_indexed_and_final():
    _, mem, gen = make({'Q': 'Sure thing, it is **25%** cheaper. Costs $3 now.'})
    res, out = collect(gen, 'Q')
    assert out == [(0, 'Sure thing,', False),
                   (1, 'it is twenty-five percent cheaper.', False),
                   (2, 'Costs three dollars now.', True)]
    assert res.finish == 'stop'
    assert res.text == 'Sure thing, it is twenty-five percent cheaper. Costs three dollars now.'
    assert res.first_token_ns and res.first_chunk_ns >= res.first_token_ns
    assert len(mem) == 0                          # nothing is remembered before commit
    gen.commit(res)
    assert mem.turns()[0].assistant == res.text


def test_final_marker_is_empty_when_the_last_chunk_already_went():
    _, _, gen = make({'Q': 'One. Two. '})
    _, out = collect(gen, 'Q')
    assert out[-1] == (2, '', True)


def test_reply_length_is_bounded():
    _, _, gen = make({'Q': 'This is a sentence. ' * 100}, max_reply_chars=100)
    res, out = collect(gen, 'Q')
    assert res.finish == 'length'
    assert sum(len(t) for _, t, _ in out) <= 100
    assert out[-1][2]


def test_max_tokens_stops_generation():
    engine, _, gen = make({'Q': 'word ' * 500}, max_tokens=10)
    res, _ = collect(gen, 'Q')
    assert engine.last_stats.generated_tokens == 10


def test_stop_event_ends_the_reply_within_a_token():
    engine, mem, gen = make({'Q': 'One, two three. ' + 'more words ' * 200})
    stop = threading.Event()
    seen = []

    def on_chunk(i, text, final):
        seen.append((text, final))
        if i == 0 and text:
            stop.set()                            # interrupt right after the first chunk
    res = gen.run('t1', 'Q', stop, on_chunk=on_chunk)
    assert res.finish == 'cancelled'
    assert seen == [('One, two three.', False), ('', True)]
    # the first chunk needs 3 words + one to confirm its boundary; at most one more token
    assert engine.last_stats.generated_tokens <= 5
    gen.commit(res)
    assert mem.turns()[0].assistant == 'One, two three.'


def test_voice_commands_change_memory_only_on_commit():
    _, mem, gen = make()
    mem.add_exchange('t0', 'My name is Ann.', 'Hi Ann.')
    res, out = collect(gen, 'Forget that.')
    assert res.command == 'forget_last' and out == [(0, "Okay, I've forgotten that.", True)]
    assert len(mem) == 1
    gen.commit(res)
    assert len(mem) == 0
    gen.voice_commands = False
    res, _ = collect(gen, 'Forget that.')
    assert res.command is None


def test_history_goes_into_the_prompt():
    engine, mem, gen = make({'My name is Ann.': 'Nice to meet you, Ann.'})
    gen.commit(collect(gen, 'My name is Ann.')[0])
    collect(gen, 'What is my name?', turn='t2')
    prompt = engine.prompts[-1]
    assert [m['role'] for m in prompt] == ['system', 'user', 'assistant', 'user']
    assert prompt[2]['content'] == 'Nice to meet you, Ann.'


def test_engine_error_is_reported_not_raised():
    engine, mem, gen = make()
    engine.close()
    engine.loaded = True

    def broken(*a, **k):
        from wallie_llm.engine import EngineError
        raise EngineError('boom')
        yield ''
    engine.stream = broken
    res, out = collect(gen, 'Q')
    assert res.finish == 'error' and 'boom' in res.error
    assert out == [(0, '', True)]
    gen.commit(res)
    assert len(mem) == 0


def test_heard_text():
    chunks = ['Once upon a time,', 'there was a dragon.', 'The end.']
    assert heard_text(chunks, 0, 0.0) == ''
    assert heard_text(chunks, 1, 0.0) == 'Once upon a time,'
    assert heard_text(chunks, 1, 0.5) == 'Once upon a time, there was...'
    assert heard_text(chunks, 3, 0.0) == ' '.join(chunks)
    assert heard_text(chunks, 9, 1.0) == ' '.join(chunks)


def test_an_unreliable_transcript_gets_the_not_heard_reply_and_leaves_no_trace():
    _, mem, gen = make({'Which planet is normal marine planet?': 'It is Earth.'},
                       not_heard_reply='Pardon?')
    out = []
    res = gen.run('t2', 'Which planet is normal marine planet?', threading.Event(),
                  on_chunk=lambda i, t, f: out.append((i, t, f)), not_heard='low_logprob')
    assert out == [(0, 'Pardon?', True)]
    assert res.finish == 'not_heard' and res.not_heard == 'low_logprob'
    assert res.first_chunk_ns
    gen.commit(res)
    assert len(mem) == 0                          # nothing of the turn is remembered
