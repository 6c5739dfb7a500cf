"""The README's main command end to end: `wallie demo` (and `wallie ask`) as a user runs them.

Each test starts the real graph through the CLI in a subprocess (its own private ROS domain
and WALLIE_HOME), asks one spoken question and checks the answer file and what is printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import wallie_cli
from wallie_cli import feed, fixture_set, observer, turn_result, wavs

pytestmark = pytest.mark.slow
QUESTION = Path(wallie_cli.__file__).with_name('data') / 'question.wav'


@pytest.fixture(scope='module')
def models():
    from wallie_common.model_store import ModelNotFoundError, resolve
    try:
        for model_id in ('silero-vad-v6', 'whisper-tiny.en', 'qwen2.5-0.5b-instruct'):
            resolve(model_id)
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))


def _run(args: list[str], tmp_path: Path, timeout: float = 420) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env['WALLIE_HOME'] = str(tmp_path / 'home')
    for key in list(env):                 # the user's configuration must not leak in
        if key.startswith('WALLIE_') and key not in ('WALLIE_HOME', 'WALLIE_MODEL_DIR'):
            env.pop(key)
    env.pop('ROS_DOMAIN_ID', None)        # the command picks a free private domain
    env['COLUMNS'] = '120'
    exe = Path(sys.executable).parent / 'wallie'
    return subprocess.run([str(exe)] + args, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _read(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf
    data, rate = sf.read(str(path), dtype='float32')
    return data, rate


def test_demo_answers_the_committed_question(models, tmp_path):
    assert QUESTION.is_file()
    proc = _run(['demo', '--defaults', '--output', 'answer.wav',
                 '--run-dir', str(tmp_path / 'run')], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out + _logs(tmp_path / 'run')
    answer = tmp_path / 'answer.wav'
    assert answer.is_file(), out
    data, rate = _read(answer)
    assert rate == 16000 and data.shape[0] / rate > 0.5, (data.shape, rate)
    assert float(np.sqrt(np.mean(np.square(data)))) > 0.01, 'the answer is silent'
    assert 'capital of France' in out, out          # the transcript
    assert 'Paris' in out, out                      # the reply
    assert 'END TO END' in out and 'endpoint wait' in out, out   # the latency table
    # the graph was stopped: no node of that run is left behind
    pids = list((tmp_path / 'run' / 'pids').glob('*'))
    assert not pids, pids


def test_ask_prints_json_for_any_wav(models, tmp_path):
    """`wallie ask` on a 44.1 kHz stereo recording of a fixture question (converted)."""
    import soundfile as sf
    import soxr

    from wallie_cli import bag_files
    fixtures = fixture_set.default_fixtures_dir()
    clean = [f for f in fixture_set.load_manifest(fixtures)
             if f['set'] == 'questions' and f['noise'] is None and f['reverb'] is None]
    if not clean:
        pytest.skip('no clean question fixture')
    fx = next((f for f in clean if f['voice']['engine'] == 'piper'), clean[0])
    pcm = bag_files.read_audio_bag(fx['bag_path']).samples.astype(np.float32) / 32768.0
    x = soxr.resample(pcm, 16000, 44100).astype(np.float32)
    wav = tmp_path / 'question_44k_stereo.wav'
    sf.write(str(wav), np.stack([x, 0.5 * x], axis=1), 44100, subtype='PCM_16')
    proc = _run(['ask', str(wav), '--defaults', '--output', 'a.wav',
                 '--run-dir', str(tmp_path / 'run')], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr + _logs(tmp_path / 'run')
    data = json.loads(proc.stdout)
    assert data['ok'] and data['answered'], data
    assert fixture_set.contains_fact(data['reply'], fx['expected_fact']), \
        json.dumps(data, indent=1)
    said = set(fixture_set.words(fx['text']))
    assert len(said & set(fixture_set.words(data['transcript']))) >= len(said) / 2, data
    lat = data['latency_ms']
    assert lat['e2e_ms'] and lat['e2e_ms'] > 0 and lat['true_e2e_ms'] > 0, lat
    assert data['answer_wav'] and Path(data['answer_wav']).is_file()


def _logs(run_dir: Path) -> str:
    parts = []
    for log in sorted((run_dir / 'logs').glob('*.log')):
        parts.append(f'--- {log.name} ---\n{log.read_text(errors="replace")[-1500:]}')
    return '\n'.join(parts)


# -- the helpers the demo, ask and bench rely on (no graph; fast) ---------------------------
def test_prepared_input_is_16k_mono_padded_with_the_speech_found(tmp_path):
    import soundfile as sf

    rate = 44100
    t = np.arange(int(0.8 * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 300 * t)
    x = np.concatenate([np.zeros(int(0.25 * rate)), tone, np.zeros(int(0.4 * rate))])
    src = tmp_path / 'in.wav'
    sf.write(str(src), np.stack([x, x], axis=1), rate)
    prep = wavs.prepare_input(src, tmp_path / 'out.wav')
    data, out_rate = sf.read(str(prep.path))
    assert out_rate == 16000 and data.ndim == 1
    assert abs(prep.duration_s - (1.45 + wavs.LEAD_S + wavs.TRAIL_S)) < 0.01
    assert abs(prep.speech_start_s - (wavs.LEAD_S + 0.25)) < 0.02
    assert abs(prep.speech_end_s - (wavs.LEAD_S + 1.05)) < 0.02
    silent = tmp_path / 'silent.wav'
    sf.write(str(silent), np.zeros(16000), 16000)
    with pytest.raises(wavs.GraphError, match='no speech'):
        wavs.prepare_input(silent, tmp_path / 'x.wav')


def test_wav_tail_reads_a_file_that_is_still_being_written(tmp_path):
    import soundfile as sf

    path = tmp_path / 'playback.wav'
    tail = wavs.WavTail(path)
    assert tail.samples() == 0 and tail.read().size == 0          # not there yet
    f = sf.SoundFile(str(path), 'w', samplerate=16000, channels=1, subtype='PCM_16')
    f.write(np.full(320, 0.25, np.float32))
    mark = tail.samples()
    f.write(np.full(160, -0.5, np.float32))
    assert mark == 320 and tail.rate == 16000 and tail.samples() == 480
    new = tail.read(mark)
    assert new.shape == (160,) and abs(int(new[0]) + 16384) <= 1
    f.close()


def test_fact_matching_and_latency_summary():
    from wallie_cli import bench_report
    assert fixture_set.contains_fact('A spider has eight legs.', ['eight', '8'])
    assert fixture_set.contains_fact('It has 8 legs', ['eight', '8'])
    assert not fixture_set.contains_fact('Parisian food', ['paris'])
    assert fixture_set.contains_fact('William Shakespeare wrote it', ['shakespeare'])
    s = bench_report.stats([100.0, 200.0, float('nan'), None, 300.0])
    assert s['n'] == 3 and s['p50'] == 200.0 and s['max'] == 300.0
    assert bench_report.stats([])['p50'] is None
    rec = observer.TurnRecord('t1', 0)
    base = 1_000_000_000_000
    for i, stage in enumerate(turn_result.CHAIN):
        rec.stamps[stage] = base + i * 100_000_000
    res = turn_result.TurnResult(rec, feed.Feed('f', speech_end_ns=base - 50_000_000))
    lat = res.latencies()
    assert lat['e2e_ms'] == 500.0 and lat['true_e2e_ms'] == 550.0
    assert lat['vad_end_error_ms'] == 50.0 and lat['asr_ms'] == 100.0
