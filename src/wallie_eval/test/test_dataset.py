"""The spoken QA set: its layout, its manifest, deterministic rendering and broken clips."""

import collections
import hashlib
import shutil

import pytest

from wallie_eval import dataset as ds
from wallie_eval import engines, score
from wallie_eval import questions as qs
from wallie_eval import voices as vx

HAS_ESPEAK = shutil.which('espeak-ng') is not None


def test_questions_are_many_distinct_and_answerable():
    texts = [q.text for q in qs.QUESTIONS]
    assert len(set(texts)) == len(texts) >= 80
    assert len(qs.BY_KEY) == len(qs.QUESTIONS)
    cats = collections.Counter(q.category for q in qs.QUESTIONS)
    assert set(cats) == {'knowledge', 'arithmetic', 'units', 'robot', 'followup'}
    for conv in qs.conversations():
        assert [q.turn or 1 for q in conv] == list(range(1, len(conv) + 1))
        assert conv[-1].scored, conv[-1].key          # a conversation ends on a question


def test_voices_cover_every_english_espeak_voice_and_split_by_voice():
    assert len(vx.VOICES) >= 12
    halves = {s: {v.name for v in vx.VOICES if v.split == s} for s in ds.SPLITS}
    assert not halves['tuning'] & halves['heldout']
    for accent in ('en-us', 'en-gb', 'en-gb-scotland', 'en-gb-x-gbclan', 'en-gb-x-rp',
                   'en-gb-x-gbcwmd', 'en-029', 'en-us-nyc'):
        for split in ds.SPLITS:
            assert any(n.startswith(f'espeak:{accent}+') for n in halves[split]), (accent, split)
    for split in ds.SPLITS:
        fams = {v.family for v in vx.VOICES if v.split == split}
        assert {'m', 'f', 'klatt', 'named'} <= fams
    assert 'piper:joe' in halves['heldout']


def test_clip_layout():
    clips = ds.specs()
    assert len({c.id for c in clips}) == len(clips)
    by_split = collections.Counter(c.split for c in clips)
    assert by_split['tuning'] == by_split['heldout']
    for c in clips:
        assert vx.BY_NAME[c.voice].split == c.split     # the half follows the voice
    noisy = [c for c in clips if c.noise]
    assert abs(len(noisy) - len(clips) / 2) <= len(clips) * 0.05
    assert all(c.room for c in noisy) and not any(c.room for c in clips if not c.noise)
    assert {c.noise['kind'] for c in noisy} == {'white', 'pink', 'babble', 'music'}
    assert all(5 <= c.noise['snr_db'] <= 25 for c in noisy)
    speeds = {c.speed for c in clips}
    assert min(speeds) == 0.85 and max(speeds) == 1.25
    for split in ds.SPLITS:
        assert {c.question for c in clips if c.split == split} == set(qs.BY_KEY)
    # the turns of one rendered conversation share voice, speed and condition, in order
    convs = collections.defaultdict(list)
    for c in clips:
        convs[c.conversation].append(c)
    for turns in convs.values():
        assert len({(t.voice, t.speed, t.condition) for t in turns}) == 1
        assert [t.turn for t in turns] == list(range(1, len(turns) + 1))


def test_manifest_matches_the_generator():
    committed = ds.load_set()
    assert committed.meta['version'] == ds.VERSION
    keys = ('id', 'split', 'question', 'text', 'accept', 'reject', 'voice', 'speed', 'noise',
            'room', 'seed', 'conversation', 'turn')
    spec = [{k: getattr(c, k) for k in keys} for c in ds.specs()]
    manifest = [{k: getattr(c, k) for k in keys} for c in committed.clips]
    assert manifest == spec, 'manifest.json is stale: python -m wallie_eval.dataset manifest'
    assert all(len(c.sha256) == 64 and c.bytes > 44 for c in committed.clips)


def _espeak_clips(n_clean=1, n_noisy=1):
    clips = [c for c in ds.load_set().clips if c.voice.startswith('espeak:')]
    return ([c for c in clips if not c.noise][:n_clean] +
            [c for c in clips if c.noise][:n_noisy])


@pytest.mark.skipif(not HAS_ESPEAK, reason='espeak-ng not installed')
def test_rendering_is_deterministic(tmp_path):
    for clip in _espeak_clips():
        samples = ds.load(clip, tmp_path)            # renders, then checks the sha256
        assert samples.size / ds.RATE == pytest.approx(clip.duration_s, abs=1e-3)
        data = ds.clip_path(clip, tmp_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == clip.sha256


@pytest.mark.skipif(not HAS_ESPEAK, reason='espeak-ng not installed')
def test_broken_clips_give_an_error_naming_the_file(tmp_path):
    clip = _espeak_clips(1, 0)[0]
    path = ds.clip_path(clip, tmp_path)
    with pytest.raises(ds.ClipError, match='not rendered') as err:
        ds.load(clip, tmp_path, render_missing=False)
    assert str(path) in str(err.value)
    ds.load(clip, tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])                     # truncated
    with pytest.raises(ds.ClipError, match='truncated') as err:
        ds.load(clip, tmp_path)
    assert str(path) in str(err.value) and clip.id in str(err.value)
    mid = len(good) // 2
    path.write_bytes(good[:mid] + bytes(b ^ 0xFF for b in good[mid:mid + 8])
                     + good[mid + 8:])                            # corrupted, same size
    with pytest.raises(ds.ClipError, match='sha256') as err:
        ds.load(clip, tmp_path)
    assert str(path) in str(err.value)


def test_the_evaluation_reports_the_other_clips_when_one_is_broken(tmp_path, monkeypatch):
    """engines.run: a broken clip becomes an error row (and so does the rest of its
    conversation); every other clip is still evaluated and scored."""
    evalset = ds.load_set()
    conv = next(c.conversation for c in evalset.clips if c.turn == 2)
    clips = [c for c in evalset.clips if c.conversation == conv] + \
        [c for c in evalset.clips if c.turn == 1 and c.conversation != conv][:2]
    broken = clips[0]

    def fake_load(clip, cache=None, render_missing=True):
        if clip.id == broken.id:
            raise ds.ClipError(clip.id, tmp_path / f'{clip.id}.wav', 'truncated')
        return None

    def fake_turn(self, clip, samples):   # a perfect listener and answerer
        row = engines.base_row(clip)
        row.update(transcript=clip.text, reply=' '.join(clip.accept[:1]), rejected='',
                   latency_ms={'e2e_ms': 1.0})
        return score.score_turn(row)

    monkeypatch.setattr(ds, 'load', fake_load)
    monkeypatch.setattr(engines.EnginePipeline, 'turn', fake_turn)
    rows = engines.run(clips, engines.Setup(tts=False), echo=lambda line: None)
    assert [bool(r.get('error')) for r in rows] == [True, True, False, False]
    assert str(tmp_path / f'{broken.id}.wav') in rows[0]['error']
    s = score.summarize(rows)
    assert s['errors'] == 2 and s['turns'] == 4
    assert s['accuracy'] == 1.0 and s['scored'] == 2
