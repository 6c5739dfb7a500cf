"""The spoken QA questions: short things people ask a voice assistant, with accepted answers.

A reply is right when it contains one of ``accept`` as whole words (case and punctuation
ignored, see :mod:`wallie_eval.score`) and none of ``reject`` (answers that contradict the
right one: "Mars ... no, Jupiter"). Numbers are listed both as digits and as words because
the model may write either. Turns with no ``accept`` (a follow-up's set-up turn such as "My
name is Sam.") count for the word error rate only.

Follow-ups are conversations: ``group`` names the conversation and ``turn`` its position;
the second question only makes sense after the first ("And what about Germany?").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    """One spoken question, the answers that make a reply right or wrong, and its place in a
    follow-up conversation."""

    key: str
    text: str                                # what the voice says
    accept: tuple[str, ...]                  # any of these in the reply counts as right
    category: str                            # knowledge | arithmetic | units | robot | followup
    reject: tuple[str, ...] = ()             # ... unless one of these is there too
    group: str = ''                          # follow-up conversation id
    turn: int = 0                            # 1-based turn in the conversation

    @property
    def scored(self) -> bool:
        return bool(self.accept)


def _q(key: str, text: str, accept: tuple[str, ...], category: str,
       reject: tuple[str, ...] = ()) -> Question:
    return Question(key, text, accept, category, reject)


def _conversation(group: str, *turns: tuple[str, tuple[str, ...]]) -> list[Question]:
    return [Question(f'{group}_{i}', text, accept, 'followup', group=group, turn=i)
            for i, (text, accept) in enumerate(turns, 1)]


KNOWLEDGE = [
    _q('capital_japan', 'What is the capital of Japan?', ('tokyo',), 'knowledge'),
    _q('capital_italy', 'What is the capital of Italy?', ('rome',), 'knowledge'),
    _q('capital_spain', 'What is the capital of Spain?', ('madrid',), 'knowledge'),
    _q('capital_canada', 'What is the capital of Canada?', ('ottawa',), 'knowledge',
       ('toronto',)),
    _q('capital_australia', 'What is the capital of Australia?', ('canberra',), 'knowledge',
       ('sydney',)),
    _q('capital_egypt', 'What is the capital of Egypt?', ('cairo',), 'knowledge'),
    _q('capital_russia', 'What is the capital of Russia?', ('moscow',), 'knowledge'),
    _q('capital_china', 'What is the capital of China?', ('beijing',), 'knowledge'),
    _q('capital_uk', 'What is the capital of the United Kingdom?', ('london',), 'knowledge'),
    _q('largest_planet', 'What is the largest planet in the solar system?', ('jupiter',),
       'knowledge'),
    _q('red_planet', 'Which planet is known as the red planet?', ('mars',), 'knowledge',
       ('jupiter', 'venus')),
    _q('our_planet', 'What planet do we live on?', ('earth',), 'knowledge'),
    _q('earth_satellite', 'What is the natural satellite of the Earth called?', ('moon',),
       'knowledge'),
    _q('planets_count', 'How many planets are in our solar system?', ('eight', '8'),
       'knowledge', ('nine', '9')),
    _q('romeo_juliet', 'Who wrote Romeo and Juliet?', ('shakespeare',), 'knowledge'),
    _q('mona_lisa', 'Who painted the Mona Lisa?', ('leonardo', 'da vinci'), 'knowledge',
       ('michelangelo',)),
    _q('starry_night', 'Who painted The Starry Night?', ('van gogh', 'gogh'), 'knowledge'),
    _q('relativity', 'Who developed the theory of relativity?', ('einstein',), 'knowledge'),
    _q('moon_walk', 'Who was the first person to walk on the moon?', ('armstrong',),
       'knowledge'),
    _q('telephone', 'Who invented the telephone?', ('bell',), 'knowledge'),
    _q('penicillin', 'Who discovered penicillin?', ('fleming',), 'knowledge'),
    _q('water_boil', 'At what temperature does water boil?', ('100', 'hundred', '212'),
       'knowledge'),
    _q('water_freeze', 'At what temperature does water freeze?', ('0', 'zero', '32'),
       'knowledge'),
    _q('gold_symbol', 'What is the chemical symbol for gold?', ('au',), 'knowledge'),
    _q('plants_gas', 'Which gas do plants take in from the air?',
       ('carbon dioxide', 'co2'), 'knowledge', ('oxygen',)),
    _q('bees_make', 'What do bees make?', ('honey',), 'knowledge'),
    _q('tallest_mountain', 'What is the tallest mountain in the world?', ('everest',),
       'knowledge'),
    _q('largest_animal', 'What is the largest animal on Earth?', ('whale',), 'knowledge'),
    _q('continents', 'How many continents are there?', ('seven', '7'), 'knowledge'),
    _q('sky_color', 'What color is the sky on a clear day?', ('blue',), 'knowledge'),
    _q('grass_color', 'What color is grass?', ('green',), 'knowledge'),
    _q('banana_color', 'What color is a ripe banana?', ('yellow',), 'knowledge'),
    _q('opposite_hot', 'What is the opposite of hot?', ('cold',), 'knowledge'),
    _q('opposite_up', 'What is the opposite of up?', ('down',), 'knowledge'),
    _q('brazil_language', 'What language do people speak in Brazil?', ('portuguese',),
       'knowledge', ('spanish',)),
    _q('mexico_language', 'What language do people speak in Mexico?', ('spanish',),
       'knowledge'),
    _q('japan_currency', 'What is the currency of Japan?', ('yen',), 'knowledge'),
    _q('jungle_king', 'Which animal is called the king of the jungle?', ('lion',),
       'knowledge'),
    _q('fastest_animal', 'What is the fastest land animal?', ('cheetah',), 'knowledge'),
    _q('frozen_water', 'What do we call frozen water?', ('ice',), 'knowledge'),
    _q('largest_country', 'What is the largest country in the world by area?', ('russia',),
       'knowledge'),
    _q('hardest_substance', 'What is the hardest natural material?', ('diamond',),
       'knowledge'),
    _q('triangle', 'What shape has three sides?', ('triangle',), 'knowledge'),
    _q('pumps_blood', 'Which organ pumps blood around the body?', ('heart',), 'knowledge'),
    _q('bread_ingredient', 'What is the main ingredient of bread?', ('flour', 'wheat'),
       'knowledge'),
    _q('square_sides', 'How many sides does a square have?', ('four', '4'), 'knowledge'),
    _q('peace_bird', 'Which bird is a symbol of peace?', ('dove',), 'knowledge'),
    _q('piano_keys', 'Which instrument has black and white keys?', ('piano',), 'knowledge'),
    _q('ww2_end', 'In which year did the Second World War end?', ('1945',), 'knowledge'),
    _q('longest_river', 'What is the longest river in Africa?', ('nile',), 'knowledge'),
]

ARITHMETIC = [
    _q('two_plus_two', 'What is two plus two?', ('four', '4'), 'arithmetic'),
    _q('seven_times_eight', 'What is seven times eight?', ('fifty six', '56'), 'arithmetic'),
    _q('fifteen_plus', 'What is fifteen plus twenty seven?', ('forty two', '42'),
       'arithmetic'),
    _q('hundred_minus', 'What is one hundred minus thirty seven?', ('sixty three', '63'),
       'arithmetic'),
    _q('sqrt_81', 'What is the square root of eighty one?', ('nine', '9'), 'arithmetic'),
    _q('ten_div_two', 'What is ten divided by two?', ('five', '5'), 'arithmetic'),
    _q('nine_times_nine', 'What is nine times nine?', ('eighty one', '81'), 'arithmetic'),
    _q('twelve_plus_eight', 'What is twelve plus eight?', ('twenty', '20'), 'arithmetic'),
    _q('half_fifty', 'What is half of fifty?', ('twenty five', '25'), 'arithmetic'),
    _q('three_times_four', 'What is three times four?', ('twelve', '12'), 'arithmetic'),
    _q('twenty_minus_six', 'What is twenty minus six?', ('fourteen', '14'), 'arithmetic'),
    _q('six_plus_seven', 'What is six plus seven?', ('thirteen', '13'), 'arithmetic'),
    _q('dozen', 'How many things are in a dozen?', ('twelve', '12'), 'arithmetic'),
    _q('double_eleven', 'What is eleven times two?', ('twenty two', '22'), 'arithmetic'),
]

UNITS = [
    _q('minutes_hour', 'How many minutes are in an hour?', ('sixty', '60'), 'units'),
    _q('cm_meter', 'How many centimeters are in a meter?', ('hundred', '100'), 'units'),
    _q('grams_kilo', 'How many grams are in a kilogram?', ('thousand', '1000', '1,000'),
       'units'),
    _q('hours_day', 'How many hours are in a day?', ('twenty four', '24'), 'units'),
    _q('leap_year', 'How many days are in a leap year?', ('three hundred sixty six',
                                                            'three hundred and sixty six',
                                                            '366'), 'units'),
    _q('weeks_year', 'How many weeks are in a year?', ('fifty two', '52'), 'units'),
    _q('inches_foot', 'How many inches are in a foot?', ('twelve', '12'), 'units'),
    _q('after_monday', 'What day comes after Monday?', ('tuesday',), 'units'),
    _q('after_june', 'Which month comes after June?', ('july',), 'units'),
    _q('half_hour', 'How many minutes are in half an hour?', ('thirty', '30'), 'units'),
    _q('umbrella', 'It is raining outside. Should I take an umbrella?', ('yes', 'umbrella'),
       'units', ('no',)),
    _q('cold_wear', 'What should I wear when it is very cold outside?',
       ('coat', 'jacket', 'sweater', 'warm', 'gloves', 'scarf', 'layers'), 'units'),
]

ROBOT = [
    _q('what_can_you_do', 'What can you do?',
       ('answer', 'questions', 'help', 'assist', 'tell', 'information'), 'robot'),
    _q('stop', 'Stop.', ('ok', 'okay', 'stop', 'stopped', 'stopping', 'sure', 'alright',
                         'of course'), 'robot'),
    _q('your_name', 'What is your name?', ('wallie', 'wally', 'walle'), 'robot'),
    _q('hear_me', 'Can you hear me?', ('yes', 'hear you', 'loud and clear'), 'robot'),
    _q('say_hello', 'Please say hello.', ('hello', 'hi'), 'robot'),
    _q('turn_left', 'Please turn left.', ('ok', 'okay', 'sure', 'turning', 'left'), 'robot'),
    _q('how_are_you', 'How are you today?', ('good', 'well', 'fine', 'great', 'doing'),
       'robot'),
    _q('thank_you', 'Thank you for your help.', ('welcome', 'pleasure', 'glad', 'happy'),
       'robot'),
    _q('good_morning', 'Good morning!', ('morning', 'hello', 'hi'), 'robot'),
    _q('are_you_robot', 'Are you a robot or a person?',
       ('robot', 'assistant', 'ai', 'artificial', 'computer', 'program', 'machine'), 'robot'),
]

FOLLOWUPS = [
    *_conversation('capitals', ('What is the capital of France?', ('paris',)),
                   ('And what about Germany?', ('berlin',))),
    *_conversation('name', ('Hello, my name is Sam.', ()),
                   ('What is my name?', ('sam',))),
    *_conversation('oceans', ('What is the largest ocean on Earth?', ('pacific',)),
                   ('And which one is the smallest?', ('arctic',))),
    *_conversation('legs', ('How many legs does a spider have?', ('eight', '8')),
                   ('And how many legs does an insect have?', ('six', '6'))),
    *_conversation('sums', ('What is five plus three?', ('eight', '8')),
                   ('Now multiply that by two.', ('sixteen', '16'))),
    *_conversation('apples', ('I have three apples.', ()),
                   ('If I eat one of them, how many are left?', ('two', '2'))),
]

QUESTIONS: list[Question] = [*KNOWLEDGE, *ARITHMETIC, *UNITS, *ROBOT, *FOLLOWUPS]
BY_KEY: dict[str, Question] = {q.key: q for q in QUESTIONS}


def conversations() -> list[list[Question]]:
    """The questions as conversations: one question alone, or a follow-up group in order."""
    out: list[list[Question]] = []
    groups: dict[str, list[Question]] = {}
    for q in QUESTIONS:
        if q.group:
            if q.group not in groups:
                groups[q.group] = []
                out.append(groups[q.group])
            groups[q.group].append(q)
        else:
            out.append([q])
    return out
