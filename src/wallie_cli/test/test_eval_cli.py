"""`wallie eval` (engine mode, ASR only): real whisper on two clips, one of them corrupted.

The corrupted clip gives an error naming its file and the exit code 1; the other clip is
still evaluated and reported in the table and in eval.json.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wallie_eval import dataset as ds

pytestmark = pytest.mark.skipif(shutil.which('espeak-ng') is None,
                                reason='espeak-ng renders the clips')
WALLIE = Path(sys.executable).with_name('wallie')


def test_eval_reports_the_good_clips_and_names_the_broken_file(tmp_path):
    evalset = ds.load_set()
    clips = [c for c in evalset.clips if c.split == 'heldout' and c.turn == 1
             and c.voice.startswith('espeak:') and not c.noise][:2]
    manifest = dict(evalset.meta, clips=[c.to_dict() for c in clips])
    (tmp_path / 'manifest.json').write_text(json.dumps(manifest))
    cache = tmp_path / 'cache'
    bad = ds.clip_path(clips[1], cache)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b'RIFF' + bytes(100))                     # a truncated render
    out = tmp_path / 'out'
    res = subprocess.run([str(WALLIE), 'eval', '--asr-only', '--no-tts', '--split', 'heldout',
                          '--manifest', str(tmp_path / 'manifest.json'), '--cache', str(cache),
                          '--out', str(out)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, COLUMNS='200'))
    assert res.returncode == 1, res.stdout + res.stderr
    assert str(bad) in res.stdout and 'truncated' in res.stdout
    doc = json.loads((out / 'eval.json').read_text())
    rows = doc['setups']['cpu']['turns']
    assert [bool(r.get('error')) for r in rows] == [False, True]
    assert rows[0]['transcript'] and rows[0]['wer'] <= 0.34     # a clean espeak question
    assert doc['setups']['cpu']['report']['overall']['errors'] == 1
    assert (out / 'eval.png').is_file()
    assert 'load average' in res.stdout
