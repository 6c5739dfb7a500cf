"""Text normalisation tables: what the voice says for written text."""

import pytest

from wallie_tts.normalize import (
    decimal_to_words,
    normalize,
    number_to_words,
    ordinal_to_words,
    year_to_words,
)


@pytest.mark.parametrize('n, words', [
    (0, 'zero'), (7, 'seven'), (13, 'thirteen'), (20, 'twenty'), (42, 'forty-two'),
    (100, 'one hundred'), (105, 'one hundred five'), (1000, 'one thousand'),
    (1203, 'one thousand two hundred three'), (2_000_000, 'two million'),
    (-8, 'minus eight'), (10**15, 'one zero zero zero zero zero zero zero zero zero zero zero '
                                  'zero zero zero zero'),
])
def test_number_to_words(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize('n, words', [
    (1, 'first'), (2, 'second'), (3, 'third'), (5, 'fifth'), (12, 'twelfth'),
    (20, 'twentieth'), (21, 'twenty-first'), (100, 'one hundredth'), (112, 'one hundred twelfth'),
])
def test_ordinals(n, words):
    assert ordinal_to_words(n) == words


@pytest.mark.parametrize('n, words', [
    (1984, 'nineteen eighty-four'), (1900, 'nineteen hundred'), (1905, 'nineteen oh five'),
    (2005, 'two thousand five'), (2024, 'twenty twenty-four'),
])
def test_years(n, words):
    assert year_to_words(n) == words


def test_decimals():
    assert decimal_to_words('3.14') == 'three point one four'
    assert decimal_to_words('-0.5') == 'minus zero point five'
    assert decimal_to_words('1,000') == 'one thousand'


@pytest.mark.parametrize('text, spoken', [
    ('I have 3 apples.', 'I have three apples.'),
    ('It costs $5.50 today.', 'It costs five dollars and fifty cents today.'),
    ('Only $1.', 'Only one dollar.'),
    ('About €3 million.', 'About three million euros.'),
    ('50% of 1,234 people', 'fifty percent of one thousand two hundred thirty-four people'),
    ('The 21st century', 'The twenty-first century'),
    ('In 1984 it rained.', 'In nineteen eighty-four it rained.'),
    ('The 1990s were fun.', 'The nineteen nineties were fun.'),
    ('Meet at 10:30 or 7:05 pm.', 'Meet at ten thirty or seven oh five P M.'),
    ('Wake me at 9:00.', "Wake me at nine o'clock."),
    ('It is 5 km away.', 'It is five kilometers away.'),
    ('Drive at 60 km/h.', 'Drive at sixty kilometers per hour.'),
    ('A 1 kg bag', 'A one kilogram bag'),
    ('It is 21.5 °C outside.', 'It is twenty-one point five degrees Celsius outside.'),
    ('Wait 30 s please.', 'Wait thirty seconds please.'),
    ('Pages 5-10', 'Pages five to ten'),
    ('-3 degrees', 'minus three degrees'),
    ('Dr. Smith vs. Mr. Jones', 'Doctor Smith versus Mister Jones'),
    ('Fruit, e.g. apples, etc.', 'Fruit, for example apples, et cetera'),
    ('Rock & roll', 'Rock and roll'),
    ('2 + 2 = 4', 'two plus two equals four'),
    ('Mail me @ home', 'Mail me at home'),
    ('Great job 😀👍🏽!', 'Great job!'),
    ('I ❤️ robots 🤖', 'I robots'),
    ('**Bold** and `code`', 'Bold and code'),
    ('# Heading\n- item one', 'Heading item one'),
    ('See [the docs](http://x.y/z).', 'See the docs.'),
    ('Visit https://example.com now', 'Visit a link now'),
    ('Call 12345678901234567', 'Call one two three four five six seven eight nine zero one '
                              'two three four five six seven'),
    ('bell\x07 ring\u200b', 'bell ring'),
    ('', ''),
    ('   ', ''),
])
def test_normalize_table(text, spoken):
    assert normalize(text) == spoken


def test_normalize_leaves_plain_text_alone():
    text = 'The capital of France is Paris, and it is lovely in spring.'
    assert normalize(text) == text


def test_normalize_has_no_digits_or_emoji_left():
    out = normalize('On 3/4 at 10:15 am I paid $12.99 for 2 🍕 (25% off), 3rd time in 2023!')
    assert not any(ch.isdigit() for ch in out)
    assert '🍕' not in out and '$' not in out and '%' not in out
