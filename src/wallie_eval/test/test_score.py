"""The scorer: right answers, contradictions, numbers, WER and the summary figures."""

import pytest

from wallie_eval import score


@pytest.mark.parametrize('reply, accept, reject, expected', [
    ('The capital of France is Paris.', ['paris'], [], True),
    ('PARIS!', ['paris'], [], True),
    ('It is parisian food.', ['paris'], [], False),            # whole words only
    ('The square root of 81 is about 9.04.', ['nine', '9'], [], False),  # decimals kept
    ('The square root of 81 is 9.', ['nine', '9'], [], True),
    ('Seventy-three.', ['seven', '7'], [], False),
    ('It is fifty-six.', ['fifty six', '56'], [], True),       # hyphens split words
    ('There are 1,000 grams in a kilogram.', ['1000'], [], True),
    ('100 degrees Celsius.', ['0', 'zero'], [], False),        # 0 is not inside 100
    ('The red planet is Mars, not Jupiter.', ['mars'], ['jupiter'], False),  # contradiction
    ('The red planet is Jupiter.', ['mars'], ['jupiter'], False),
    ('', ['paris'], [], False),
    ('Anything at all.', [], [], False),                       # nothing accepted: unscored
    ("It's Leonardo da Vinci.", ['da vinci'], [], True),
])
def test_is_correct(reply, accept, reject, expected):
    assert score.is_correct(reply, accept, reject) is expected


def test_wer_uses_spoken_numbers_and_ignores_case_and_punctuation():
    assert score.wer('What is seven times eight?', 'what is 7 times 8') == 0.0
    assert score.wer('Who wrote Romeo and Juliet?', 'Who wrote Romeo and Juliet') == 0.0
    assert score.wer('Who wrote Romeo and Juliet?', 'We wrote Romeo and Juliet?') == \
        pytest.approx(1 / 5)
    assert score.wer('What is the capital of Japan?', '') == 1.0


def test_wer_pools_the_words_of_all_turns():
    refs = ['one two three four', 'five six']
    hyps = ['one two three four', 'five']
    assert score.wer(refs, hyps) == pytest.approx(1 / 6)


def _row(**kw):
    row = {'text': 'Which planet is known as the red planet?', 'transcript': '',
           'reply': '', 'accept': ['mars'], 'reject': ['jupiter'], 'rejected': '',
           'split': 'heldout', 'voice': 'v', 'condition': 'clean', 'category': 'knowledge',
           'latency_ms': {'e2e_ms': 500.0}}
    row.update(kw)
    return score.score_turn(row)


def test_score_turn_flags():
    heard = 'Which planet is known as the red planet?'
    misheard = 'Which planet is normal marine planet?'
    ok = _row(transcript=heard, reply='Mars.')
    assert ok['correct'] and not ok['misheard'] and not ok['confident_wrong']
    wrong = _row(transcript=misheard, reply='The normal marine planet is Earth.')
    assert wrong['misheard'] and wrong['confident_wrong'] and not wrong['correct']
    refused = _row(transcript=misheard, reply="Sorry, I didn't catch that.",
                   rejected='low_logprob')
    assert not refused['confident_wrong'] and not refused['false_reject']
    assert not refused['correct']
    false_reject = _row(transcript=heard, reply="Sorry, I didn't catch that.",
                        rejected='low_logprob')
    assert false_reject['false_reject'] and not false_reject['correct']
    # a refusal that happens to contain the answer word is still not a right answer
    assert not _row(transcript=heard, reply='Mars?', rejected='implausible')['correct']


def test_summary_figures():
    heard = 'Which planet is known as the red planet?'
    rows = [_row(transcript=heard, reply='Mars.', latency_ms={'e2e_ms': 400.0}),
            _row(transcript=heard, reply='Jupiter.', latency_ms={'e2e_ms': 600.0}),
            _row(transcript='Which planet is normal marine planet?', reply='Earth.',
                 condition='babble+room', latency_ms={'e2e_ms': 800.0}),
            _row(transcript=heard, reply="Sorry, I didn't catch that.", rejected='low_logprob',
                 latency_ms={'e2e_ms': 100.0}),
            {**_row(), 'error': 'q.v: /cache/q.v.wav: truncated', 'scored': True}]
    s = score.summarize(rows)
    assert s['turns'] == 5 and s['errors'] == 1 and s['scored'] == 4
    assert s['correct'] == 1 and s['accuracy'] == pytest.approx(0.25)
    assert s['rejected'] == 1
    assert s['confident_wrong_rate'] == pytest.approx(0.25)
    assert s['false_reject_rate'] == pytest.approx(0.25)
    assert s['clean_reject_rate'] == pytest.approx(1 / 3)
    assert s['e2e_p50_ms'] == pytest.approx(600.0)     # the refusal is not an answer
    rep = score.report(rows)
    assert set(rep) == {'overall', 'split', 'voice', 'condition', 'category'}
    assert rep['condition']['heldout/babble+room']['confident_wrong_rate'] == 1.0
