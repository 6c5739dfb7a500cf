"""Table tests of the endpointing state machine (32 ms blocks)."""

import pytest

from wallie_audio.endpoint import EndpointConfig, Endpointer, Kind

B = 32_000_000  # 32 ms in ns


def run(probs, **cfg):
    ep = Endpointer(EndpointConfig(**cfg))
    events = []
    for i, p in enumerate(probs):
        for ev in ep.step(p, i * B, B):
            events.append((i, ev))
    return events


def kinds(events):
    return [(i, e.kind.value) for i, e in events]


CASES = [
    # name, probs, config, expected (block index, kind)
    ('silence only', [0.0] * 50, {}, []),
    ('one voiced blip is debounced', [0.0, 0.9, 0.0, 0.0] + [0.0] * 20, {}, []),
    ('speech then endpoint', [0.9] * 10 + [0.0] * 15, {},
     [(1, 'start'), (11, 'probably_ended'), (22, 'end')]),
    ('pause shorter than min silence resumes', [0.9] * 10 + [0.0] * 5 + [0.9] * 5 + [0.0] * 15,
     {}, [(1, 'start'), (11, 'probably_ended'), (15, 'resumed'), (21, 'probably_ended'),
          (32, 'end')]),
    ('too short is discarded', [0.9] * 3 + [0.0] * 15, {'min_speech_ms': 200},
     [(1, 'start'), (4, 'probably_ended'), (15, 'discard')]),
    ('max utterance forces the end', [0.9] * 40, {'max_utterance_ms': 640},
     [(1, 'start'), (19, 'end'), (21, 'start'), (39, 'end')]),  # speech goes on: new one
    ('hysteresis: mid probabilities keep speech', [0.9] * 5 + [0.4] * 20 + [0.0] * 15, {},
     [(1, 'start'), (26, 'probably_ended'), (37, 'end')]),
    ('no probable-end when it equals min silence', [0.9] * 5 + [0.0] * 15,
     {'probable_end_ms': 400, 'min_silence_ms': 400}, [(1, 'start'), (17, 'end')]),
    ('zero debounce starts at once', [0.9] + [0.0] * 15, {'speech_start_ms': 0,
                                                           'min_speech_ms': 0},
     [(0, 'start'), (2, 'probably_ended'), (13, 'end')]),
]


@pytest.mark.parametrize('name,probs,cfg,expected', CASES, ids=[c[0] for c in CASES])
def test_endpoint_table(name, probs, cfg, expected):
    assert kinds(run(probs, **cfg)) == expected


def test_speech_end_is_last_voiced_sample():
    events = run([0.0] * 3 + [0.9] * 10 + [0.0] * 15, end_offset_ms=0)
    end = [e for _, e in events if e.kind is Kind.END][0]
    assert end.speech_start_ns == 3 * B
    assert end.speech_end_ns == 13 * B


def test_speech_end_offset_compensates_vad_lag():
    events = run([0.0] * 3 + [0.9] * 10 + [0.0] * 15, end_offset_ms=70)
    probable = [e for _, e in events if e.kind is Kind.PROBABLY_ENDED][0]
    end = [e for _, e in events if e.kind is Kind.END][0]
    assert end.speech_end_ns == probable.speech_end_ns == 13 * B - 70_000_000
    # never before the speech start
    events = run([0.9] * 3 + [0.0] * 15, end_offset_ms=300, min_speech_ms=0)
    assert [e for _, e in events if e.kind is Kind.END][0].speech_end_ns == 0
    # speech cut by max length did not end: no offset
    events = run([0.9] * 30, end_offset_ms=70, max_utterance_ms=640)
    end = [e for _, e in events if e.kind is Kind.END][0]
    assert end.speech_end_ns == end.stamp_ns


def test_invalid_config_rejected():
    with pytest.raises(ValueError):
        EndpointConfig(threshold=0.3, neg_threshold=0.5)
    with pytest.raises(ValueError):
        EndpointConfig(min_silence_ms=-1)


def test_reconfigure_applies_to_current_utterance():
    ep = Endpointer(EndpointConfig(min_silence_ms=1000))
    for i in range(10):
        ep.step(0.9, i * B, B)
    ep.reconfigure(EndpointConfig(min_silence_ms=200))
    out = []
    for i in range(10, 20):
        out += ep.step(0.0, i * B, B)
    assert any(e.kind is Kind.END for e in out)


def test_finish_now():
    ep = Endpointer()
    assert ep.finish_now(0) is None
    for i in range(10):
        ep.step(0.9, i * B, B)
    ev = ep.finish_now(10 * B, 'push_to_talk')
    assert ev is not None and ev.kind is Kind.END and ev.reason == 'push_to_talk'


# -- early end on a complete transcript -------------------------------------------------
def _trailing(ep, voiced=10, silent=3):
    """Speech then `silent` blocks of silence; returns the next block index."""
    events = []
    for i in range(voiced):
        events += ep.step(0.9, i * B, B)
    for i in range(voiced, voiced + silent):
        events += ep.step(0.0, i * B, B)
    return voiced + silent, events


def test_complete_transcript_ends_after_short_silence():
    ep = Endpointer(EndpointConfig(min_silence_ms=400, complete_silence_ms=192))
    n, events = _trailing(ep, silent=3)           # 96 ms of silence: PROBABLY_ENDED sent
    assert events[-1].kind is Kind.PROBABLY_ENDED and ep.trailing
    assert ep.complete(n * B) is None             # not yet 192 ms
    out = []
    for i in range(n, n + 3):
        out += [(i, e) for e in ep.step(0.0, i * B, B)]
    assert [(i, e.kind, e.reason) for i, e in out] == [(15, Kind.END, 'complete')]


def test_complete_transcript_after_enough_silence_ends_at_once():
    ep = Endpointer(EndpointConfig(min_silence_ms=400, complete_silence_ms=160))
    n, _ = _trailing(ep, silent=6)                # 192 ms
    ev = ep.complete(n * B + 5)
    assert ev is not None and ev.kind is Kind.END and ev.reason == 'complete'
    assert ev.stamp_ns == n * B + 5 and ev.speech_end_ns == 10 * B - 70_000_000
    assert ep.state.value == 'silence'


def test_complete_is_cancelled_by_resumed_speech_and_ignored_when_off():
    ep = Endpointer(EndpointConfig(min_silence_ms=400, complete_silence_ms=160))
    n, _ = _trailing(ep, silent=3)
    assert ep.complete(n * B) is None
    kinds_seen = [e.kind for e in ep.step(0.9, n * B, B)]
    assert kinds_seen == [Kind.RESUMED]
    out = []
    for i in range(n + 1, n + 12):                # 352 ms < 400: the old shortcut is gone
        out += ep.step(0.0, i * B, B)
    assert Kind.END not in [e.kind for e in out]
    # off: complete_silence_ms = 0
    ep = Endpointer(EndpointConfig(min_silence_ms=400, complete_silence_ms=0))
    n, _ = _trailing(ep, silent=10)
    assert ep.complete(n * B) is None and ep.trailing
    # not trailing: no effect
    ep = Endpointer(EndpointConfig(complete_silence_ms=160))
    assert ep.complete(0) is None


@pytest.mark.parametrize('text,ok', [
    ('What is the capital of France?', True),
    ('Set a timer for ten minutes.', True),
    ('Tell me a joke!', True),
    ('"Is it raining?"', True),
    ('What is the capital of?', False),       # Whisper punctuates fragments
    ('I want to go to the.', False),
    ('What is the capital of France', False),  # no punctuation: not sure
    ('So, um...', False),
    ('Well, and', False),
    ('Hello.', False),                         # one word: too little to trust
    ('Hello there.', True),
    ('', False),
])
def test_looks_complete(text, ok):
    from wallie_common.text import looks_complete
    assert looks_complete(text) is ok
