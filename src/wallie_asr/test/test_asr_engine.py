"""WhisperEngine without the real model: guards, input checks and the compute ladder."""

from __future__ import annotations

import numpy as np
import pytest

from wallie_asr.config import EngineConfig
from wallie_asr.engine import (
    EngineError,
    RawDecode,
    Rung,
    WhisperEngine,
    compression_ratio,
    compute_ladder,
    strip_annotations,
)

SPEECH = (np.sin(np.arange(16000) / 5.0) * 0.2).astype(np.float32)


class FakeBackend:
    multilingual = False

    def __init__(self, raw: RawDecode, fail_decode: list | None = None) -> None:
        self.raw = raw
        self.fail_decode = fail_decode or []
        self.closed = False
        self.decodes = 0

    def decode(self, audio, request):
        self.decodes += 1
        if self.fail_decode:
            raise self.fail_decode.pop(0)
        return self.raw

    def close(self):
        self.closed = True


def raw(text='What is the capital of France?', lp=-0.2, ns=0.05, **kw) -> RawDecode:
    return RawDecode(text=text, avg_logprob=lp, no_speech_prob=ns, language='en', n_tokens=8,
                     **kw)


def make_engine(decode: RawDecode, *, device='cpu', compute='auto', failures=None,
                cuda_devices=0, fail_decode=None, **cfg):
    """An engine whose factory fails for the rungs listed in `failures` (rung str -> exc)."""
    failures = failures or {}
    made: list[tuple[Rung, FakeBackend]] = []

    def factory(path, dev, ct, threads):
        rung = Rung(dev, ct)
        if str(rung) in failures:
            raise failures[str(rung)]
        backend = FakeBackend(decode, fail_decode if not made else None)
        made.append((rung, backend))
        return backend
    engine = WhisperEngine(EngineConfig(device=device, compute_type=compute, warmup=False, **cfg),
                           model_path=__import__('pathlib').Path('/nonexistent'), factory=factory,
                           cuda_devices=cuda_devices)
    return engine, made


def test_speech_passes_with_confidence():
    engine, _ = make_engine(raw())
    engine.load()
    r = engine.transcribe(SPEECH)
    assert r.text == 'What is the capital of France?' and r.rejected is None
    assert 0.8 < r.confidence < 0.85 and r.language == 'en' and r.audio_s == 1.0


@pytest.mark.parametrize('decode,vad,reason', [
    (raw('You', lp=-1.8, ns=0.96), None, 'no_speech'),
    (raw('Some words here', lp=-0.5, ns=0.5), False, 'no_speech'),
    (raw('garbled words', lp=-2.0, ns=0.1), None, 'low_logprob'),
    (raw('. . . . . . . . . .', lp=-0.2, ns=0.9), None, 'empty'),
    (raw('[Music]', lp=-0.3, ns=0.5), None, 'empty'),
    (raw('♪ ♪ ♪', lp=-0.3, ns=0.5), None, 'empty'),
    (raw('the the the the the the the the the the the the the the the the the'), None,
     'repetition'),
    (raw('Turn it on', hit_max_length=True), None, 'repetition'),
    (raw('Thanks for watching!', lp=-0.4, ns=0.5), None, 'filler'),
    (raw('Thank you.', lp=-1.0, ns=0.1), None, 'filler'),
    (raw('Thank you.', lp=-0.2, ns=0.1), False, 'filler'),
])
def test_guards_reject(decode, vad, reason):
    engine, _ = make_engine(decode)
    engine.load()
    r = engine.transcribe(SPEECH, vad_speech=vad)
    assert r.text == '' and r.rejected == reason, r


def test_real_thank_you_is_kept():
    """A user who clearly says "thank you" (confident, low no-speech) is heard."""
    engine, _ = make_engine(raw('Thank you.', lp=-0.2, ns=0.18))
    engine.load()
    assert engine.transcribe(SPEECH, vad_speech=True).text == 'Thank you.'


@pytest.mark.parametrize('audio,reason', [
    (np.zeros(16000, np.float32), 'silence'),
    (np.full(800, 0.3, np.float32), 'too_short'),
    (np.zeros(0, np.int16), 'too_short'),
])
def test_audio_not_decoded(audio, reason):
    engine, made = make_engine(raw())
    engine.load()
    r = engine.transcribe(audio)
    assert r.rejected == reason and made[0][1].decodes == 0


@pytest.mark.parametrize('audio', [
    np.array([0.1, np.nan] * 8000, np.float32),
    np.zeros((16000, 2), np.float32),
    np.zeros(16000 * 61, np.float32),
    np.array(['a'] * 10),
])
def test_bad_audio_raises_value_error(audio):
    engine, _ = make_engine(raw())
    engine.load()
    with pytest.raises(ValueError):
        engine.transcribe(audio)


def test_int16_input_and_long_audio_split_in_windows():
    engine, made = make_engine(raw('hello there'))
    engine.load()
    r = engine.transcribe((np.sin(np.arange(16000 * 40) / 5.0) * 8000).astype(np.int16))
    assert made[0][1].decodes == 2 and r.text == 'hello there hello there'


def test_annotations_and_ratio_helpers():
    assert strip_annotations('(upbeat music) Hello [Music] there ♪') == 'Hello there'
    assert compression_ratio('abc abc abc abc abc abc abc abc abc abc') > 2.4
    assert compression_ratio('What is the capital of France?') < 1.5


# --------------------------------------------------------------------------- ladder


def test_ladder_shapes():
    assert [str(r) for r in compute_ladder('cuda', 'float16')] == [
        'cuda/float16', 'cuda/int8_float16', 'cuda/int8', 'cpu/int8']
    assert [str(r) for r in compute_ladder('cuda', 'float32')] == [
        'cuda/float32', 'cuda/float16', 'cuda/int8_float16', 'cuda/int8', 'cpu/int8']
    assert [str(r) for r in compute_ladder('auto', 'auto', cuda_devices=1)][0] == 'cuda/float16'
    assert [str(r) for r in compute_ladder('auto', 'auto', cuda_devices=0)] == ['cpu/int8']
    assert [str(r) for r in compute_ladder('cpu', 'float32')] == ['cpu/float32', 'cpu/int8']
    with pytest.raises(ValueError):
        compute_ladder('tpu', 'int8')


def test_failed_cuda_init_steps_down_to_cpu_int8():
    err = RuntimeError('CUDA failed with error no CUDA-capable device is detected')
    engine, made = make_engine(raw(), device='cuda', failures={
        'cuda/float16': err, 'cuda/int8_float16': err, 'cuda/int8': err})
    report = engine.load()
    assert report.rung == Rung('cpu', 'int8') and report.degraded and len(report.failures) == 3
    assert engine.transcribe(SPEECH).text
    assert 'loaded on cpu/int8' in engine.events[0]


def test_cuda_oom_at_load_steps_one_rung():
    oom = RuntimeError('CUDA failed with error out of memory')
    engine, made = make_engine(raw(), device='cuda', compute='float16',
                               failures={'cuda/float16': oom})
    assert engine.load().rung == Rung('cuda', 'int8_float16')


def test_cuda_oom_while_decoding_steps_down_and_retries():
    oom = RuntimeError('CUDA failed with error out of memory')
    engine, made = make_engine(raw(), device='cuda', fail_decode=[oom])
    engine.load()
    r = engine.transcribe(SPEECH)
    assert r.text and engine.rung == Rung('cuda', 'int8_float16')
    assert made[0][1].closed                      # the failed model was released
    assert any('failed while decoding' in e for e in engine.events)


def test_cpu_float16_unsupported_falls_back_to_int8():
    err = ValueError('Requested float16 compute type, but the target device or backend do not '
                     'support efficient float16 computation.')
    engine, _ = make_engine(raw(), compute='float16', failures={'cpu/float16': err})
    assert engine.load().rung == Rung('cpu', 'int8')


def test_non_gpu_load_error_is_not_hidden():
    engine, _ = make_engine(raw(), failures={'cpu/int8': RuntimeError('corrupt model.bin')})
    with pytest.raises(EngineError, match='corrupt model.bin'):
        engine.load()


def test_every_rung_failing_raises():
    oom = RuntimeError('CUDA out of memory')
    engine, _ = make_engine(raw(), device='cuda', failures={
        'cuda/float16': oom, 'cuda/int8_float16': oom, 'cuda/int8': oom,
        'cpu/int8': RuntimeError('CUDA driver version is insufficient')})
    with pytest.raises(EngineError):
        engine.load()


def test_close_releases_and_transcribe_then_fails():
    engine, made = make_engine(raw())
    engine.load()
    engine.close()
    assert made[0][1].closed
    with pytest.raises(EngineError):
        engine.transcribe(SPEECH)


def test_missing_model_names_fetch_command(tmp_path, monkeypatch):
    from wallie_common.model_store import ModelNotFoundError
    monkeypatch.setenv('WALLIE_MODEL_DIR', str(tmp_path))
    engine = WhisperEngine(EngineConfig(model='whisper-tiny.en', warmup=False))
    with pytest.raises(ModelNotFoundError, match='wallie models fetch'):
        engine.load()


def test_real_model_warmup_and_guards_on_cpu():
    """The real tiny.en: speech is recognised, noise is not (loads in ~1 s)."""
    from wallie_asr.fixtures import nonspeech_clips, normalize_for_wer, speech_clips
    engine = WhisperEngine(EngineConfig(cpu_threads=2))
    report = engine.load()
    assert report.rung == Rung('cpu', 'int8') and report.warmup_s > 0
    clip = next(c for c in speech_clips() if c.id == 'timer_us')
    assert normalize_for_wer(engine.transcribe(clip.audio).text) == 'set a timer for ten minutes'
    for clip in nonspeech_clips():
        r = engine.transcribe(clip.audio)
        assert r.text == '', (clip.id, r)
    engine.close()
