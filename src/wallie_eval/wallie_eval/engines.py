"""In-process engine mode: the spoken QA set through the stage engines, without ROS.

Each turn: the clip's utterance (speech with 0.3 s either side, what the voice gate hands the
ASR) -> ``WhisperEngine.transcribe`` -> the reliability rule -> ``ReplyGenerator.run`` (the
node's prompt, memory and chunking) -> Piper's first audio of the first chunk. Latency here is
compute only: ``e2e_ms`` = ASR + LLM first chunk + TTS first audio (no endpoint wait, no
transport); the live graph (``wallie eval --live``) measures the real thing.

Sweeps change one stage at a time, so results are cached per stage: a transcript per (ASR
settings, clip) and a reply per (LLM settings, conversation so far, transcript). A cached
result keeps the timings measured when it was computed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from wallie_eval import dataset as ds
from wallie_eval import score

PAD_S = 0.3


@dataclass(frozen=True)
class Setup:
    """One combination of models and settings to evaluate."""

    name: str = 'cpu'
    asr_model: str = 'whisper-tiny.en'
    asr_compute_type: str = 'int8'
    asr_beam_size: int = 1
    asr_initial_prompt: str = ''
    llm_model: str = 'qwen2.5-0.5b-instruct'
    system_prompt: str = ''              # '' = the node's default persona
    temperature: float = 0.2
    top_p: float = 0.9
    max_tokens: int = 96
    reject_unreliable: bool = True       # the ASR node's asr.reject.enabled
    min_avg_logprob: float = -0.75
    max_no_speech_prob: float = 0.5
    max_compression_ratio: float = 2.0
    tts: bool = True
    threads: int = 2
    asr_only: bool = False               # transcribe only (WER and ASR time; no replies)

    @classmethod
    def from_params(cls, name: str, params: Mapping[str, Mapping[str, Any]],
                    **overrides: Any) -> 'Setup':
        """From merged node parameters ({'asr': {...}, 'llm': {...}}; missing keys keep the
        defaults above)."""
        asr, llm = params.get('asr', {}), params.get('llm', {})
        d = cls()
        s = cls(name=name,
                asr_model=str(asr.get('asr.model', d.asr_model)),
                asr_compute_type=str(asr.get('asr.compute_type', d.asr_compute_type)),
                asr_beam_size=int(asr.get('asr.beam_size', d.asr_beam_size)),
                asr_initial_prompt=str(asr.get('asr.initial_prompt', '')),
                llm_model=str(llm.get('llm.model', d.llm_model)),
                system_prompt=str(llm.get('llm.system_prompt', '')),
                temperature=float(llm.get('llm.temperature', d.temperature)),
                top_p=float(llm.get('llm.top_p', d.top_p)),
                max_tokens=int(llm.get('llm.max_tokens', d.max_tokens)),
                reject_unreliable=bool(asr.get('asr.reject.enabled', True)),
                min_avg_logprob=float(asr.get('asr.reject.min_avg_logprob',
                                              d.min_avg_logprob)),
                max_no_speech_prob=float(asr.get('asr.reject.max_no_speech_prob',
                                                 d.max_no_speech_prob)),
                max_compression_ratio=float(asr.get('asr.reject.max_compression_ratio',
                                                    d.max_compression_ratio)))
        return replace(s, **overrides)

    def asr_key(self) -> tuple:
        return (self.asr_model, self.asr_compute_type, self.asr_beam_size,
                self.asr_initial_prompt, self.threads)

    def llm_key(self) -> tuple:
        return (self.llm_model, self.system_prompt, self.temperature, self.top_p,
                self.max_tokens, self.threads)

    def reliability(self) -> Any:
        from wallie_asr.reliability import ReliabilityConfig
        return ReliabilityConfig(enabled=self.reject_unreliable,
                                 min_avg_logprob=self.min_avg_logprob,
                                 max_no_speech_prob=self.max_no_speech_prob,
                                 max_compression_ratio=self.max_compression_ratio)


@dataclass
class Caches:
    """What the engine mode keeps between setups: ASR and LLM results, and the loaded LLM
    engines shared by setups of the same model."""

    asr: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    llm: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    # loaded LLM engines, shared by setups that use the same model (one load, one copy in
    # memory); `owner` is the pipeline whose system prompt the engine's cache holds
    engines: dict[tuple, Any] = field(default_factory=dict)
    owner: dict[tuple, Any] = field(default_factory=dict)

    def close(self) -> None:
        for engine in self.engines.values():
            try:
                engine.close()
            except Exception:
                pass
        self.engines.clear()
        self.owner.clear()


def utterance(samples: np.ndarray, clip: ds.Clip) -> np.ndarray:
    """The clip's speech with 0.3 s (PAD_S) either side, as the voice gate hands it to ASR."""
    a = max(0, int((clip.speech_start_s - PAD_S) * ds.RATE))
    b = min(samples.size, int((clip.speech_end_s + PAD_S) * ds.RATE))
    return samples[a:b]


class EnginePipeline:
    """The stage engines of one Setup, loaded lazily (a cached stage is never loaded)."""

    def __init__(self, setup: Setup, caches: Caches | None = None,
                 echo: Callable[[str], None] = lambda line: None) -> None:
        self.setup = setup
        self.caches = caches or Caches()
        self.echo = echo
        self._asr: Any = None
        self._gen: Any = None
        self._llm: Any = None
        self._synth: Any = None
        self._history: list[tuple[str, str]] = []   # (user, reply) of this conversation
        self._synced: list[tuple[str, str]] = []    # what the generator's memory holds

    # -- engines ------------------------------------------------------------------------
    def asr(self) -> Any:
        if self._asr is None:
            from wallie_asr.config import EngineConfig
            from wallie_asr.engine import WhisperEngine
            s = self.setup
            t0 = time.perf_counter()
            self._asr = WhisperEngine(EngineConfig(
                model=s.asr_model, device='cpu', compute_type=s.asr_compute_type,
                cpu_threads=s.threads, beam_size=s.asr_beam_size,
                initial_prompt=s.asr_initial_prompt))
            self._asr.load()
            self.echo(f'  ASR {s.asr_model} {s.asr_compute_type} beam {s.asr_beam_size} '
                      f'loaded ({time.perf_counter() - t0:.1f} s)')
        return self._asr

    def generator(self) -> Any:
        if self._gen is None:
            from wallie_llm.config import (
                ChunkerConfig,
                EngineConfig,
                GenerationConfig,
                MemoryConfig,
                load_system_prompt,
            )
            from wallie_llm.engine import create_engine
            from wallie_llm.memory import ConversationMemory
            from wallie_llm.reply import ReplyGenerator
            s = self.setup
            t0 = time.perf_counter()
            key = (s.llm_model, s.threads)
            if key not in self.caches.engines:
                engine = create_engine(EngineConfig(model=s.llm_model, threads=s.threads))
                engine.load()
                self.caches.engines[key] = engine
            self._llm = self.caches.engines[key]
            mcfg = MemoryConfig(system_prompt=load_system_prompt(s.system_prompt, ''))
            memory = ConversationMemory(
                mcfg.system_prompt, self._llm.count_tokens,
                history_max_tokens=mcfg.history_max_tokens,
                prompt_budget_tokens=max(64, self._llm.context_tokens - 16),
                idle_timeout_s=0.0, summarize_dropped=mcfg.summarize_dropped)
            self._gen = ReplyGenerator(self._llm, memory,
                                       GenerationConfig(max_tokens=s.max_tokens,
                                                        temperature=s.temperature,
                                                        top_p=s.top_p),
                                       ChunkerConfig(), mcfg.voice_commands)
            self._prepare()
            self.echo(f'  LLM {s.llm_model} loaded ({time.perf_counter() - t0:.1f} s)')
        return self._gen

    def _prepare(self) -> None:
        """This setup's system prompt into the (maybe shared) engine's cache, untimed, as the
        node keeps it there between turns."""
        key = (self.setup.llm_model, self.setup.threads)
        if self.caches.owner.get(key) is not self:
            self._gen.prepare()
            self.caches.owner[key] = self

    def synth(self) -> Any:
        if self._synth is None:
            from wallie_tts.config import EngineSettings, StreamSettings
            from wallie_tts.engine import load_engine
            from wallie_tts.stream import ChunkSynthesizer
            engine = load_engine(EngineSettings(), allow_fallback=False).engine
            self._synth = ChunkSynthesizer(engine, StreamSettings())
            self._synth.synthesize_all('Hello.')
        return self._synth

    # -- turns --------------------------------------------------------------------------
    def reset(self) -> None:
        self._history = []
        if self._gen is not None:
            self._gen.memory.reset()
        self._synced = []

    def transcribe(self, clip: ds.Clip, samples: np.ndarray) -> dict[str, Any]:
        key = (self.setup.asr_key(), clip.id, clip.sha256)
        hit = self.caches.asr.get(key)
        if hit is None:
            res = self.asr().transcribe(utterance(samples, clip), vad_speech=True)
            hit = {'transcript': res.text, 'asr_rejected': res.rejected or '',
                   'avg_logprob': res.avg_logprob, 'no_speech_prob': res.no_speech_prob,
                   'compression_ratio': res.compression_ratio, 'audio_s': res.audio_s,
                   'asr_ms': res.processing_ms}
            self.caches.asr[key] = hit
        return dict(hit)

    def reply(self, text: str) -> dict[str, Any]:
        key = (self.setup.llm_key(), tuple(self._history), text)
        hit = self.caches.llm.get(key)
        if hit is None:
            gen = self.generator()
            self._prepare()
            if self._synced != self._history:      # cached turns before this one
                gen.memory.reset()
                for i, (user, assistant) in enumerate(self._history):
                    gen.memory.add_exchange(f'replay-{i}', user, assistant)
            res = gen.run(f'eval-{len(self.caches.llm)}', text, threading.Event())
            gen.commit(res)
            ms = 1e-6
            hit = {'reply': res.text, 'first_chunk': res.chunks[0] if res.chunks else '',
                   'llm_first_token_ms': (res.first_token_ns - res.start_ns) * ms
                   if res.first_token_ns else None,
                   'llm_first_chunk_ms': (res.first_chunk_ns - res.start_ns) * ms
                   if res.first_chunk_ns else None,
                   'llm_total_ms': (res.done_ns - res.start_ns) * ms}
            self.caches.llm[key] = hit
            self._synced = self._history + [(text, hit['reply'])]
        self._history = self._history + [(text, hit['reply'])]
        return dict(hit)

    def tts_first_ms(self, chunk: str) -> float | None:
        if not self.setup.tts or not chunk:
            return None
        from wallie_tts.normalize import normalize
        synth = self.synth()                 # loaded (and warmed up) outside the timing
        t0 = time.perf_counter()
        next(iter(synth.blocks(normalize(chunk), True)), None)
        return (time.perf_counter() - t0) * 1e3

    def turn(self, clip: ds.Clip, samples: np.ndarray) -> dict[str, Any]:
        from wallie_asr.reliability import unreliable_reason
        row: dict[str, Any] = base_row(clip)
        row.update(self.transcript_fields(clip, samples))
        text = row['transcript']
        reason = unreliable_reason(text, row['avg_logprob'], row['no_speech_prob'],
                                   row['compression_ratio'], row['audio_s'],
                                   self.setup.reliability()) if text else None
        lat: dict[str, Any] = {'asr_ms': row.pop('asr_ms')}
        if self.setup.asr_only:
            row.update(reply='', rejected=reason or '', latency_ms=lat)
            return score.score_turn(row)
        if reason:
            res = self.generator().run('eval-not-heard', text, threading.Event(),
                                       not_heard=reason)
            row.update(rejected=reason, reply=res.text)
            lat['llm_first_chunk_ms'] = (res.first_chunk_ns - res.start_ns) * 1e-6
            first = res.text
        elif text:
            r = self.reply(text)
            first = r.pop('first_chunk')
            lat.update({k: r.pop(k) for k in ('llm_first_token_ms', 'llm_first_chunk_ms',
                                              'llm_total_ms')})
            row.update(r, rejected='')
        else:
            row.update(reply='', rejected='')
            first = ''
        lat['tts_first_audio_ms'] = self.tts_first_ms(first)
        parts = [lat['asr_ms'], lat.get('llm_first_chunk_ms'),
                 lat['tts_first_audio_ms'] if self.setup.tts else 0.0]
        lat['e2e_ms'] = sum(parts) if text and all(p is not None for p in parts) else None
        row['latency_ms'] = lat
        return score.score_turn(row)

    def transcript_fields(self, clip: ds.Clip, samples: np.ndarray) -> dict[str, Any]:
        return self.transcribe(clip, samples)

    def close(self) -> None:
        for engine in (self._asr, getattr(self._synth, 'engine', None)):   # LLM: shared
            if engine is not None:
                try:
                    engine.close()
                except Exception:
                    pass
        self._asr = self._llm = self._gen = self._synth = None


def base_row(clip: ds.Clip) -> dict[str, Any]:
    """The row fields of a turn that come from its clip."""
    return {'id': clip.id, 'split': clip.split, 'voice': clip.voice, 'family': clip.family,
            'condition': clip.condition, 'category': clip.category, 'speed': clip.speed,
            'conversation': clip.conversation, 'turn': clip.turn, 'text': clip.text,
            'accept': list(clip.accept), 'reject': list(clip.reject)}


def error_row(clip: ds.Clip, error: str) -> dict[str, Any]:
    """The row of a turn that failed with `error`."""
    row = base_row(clip)
    row.update(error=error, transcript='', reply='', rejected='', latency_ms={})
    return row


def run(clips: Sequence[ds.Clip], setup: Setup, *, caches: Caches | None = None,
        cache_dir: str | None = None, echo: Callable[[str], None] = print,
        progress: bool = True) -> list[dict[str, Any]]:
    """Every clip through the engines of `setup`; one row per turn (errors included)."""
    return run_many(clips, [setup], caches=caches, cache_dir=cache_dir, echo=echo,
                    progress=progress)[setup.name]


def run_many(clips: Sequence[ds.Clip], setups: Sequence[Setup], *,
             caches: Caches | None = None, cache_dir: str | None = None,
             echo: Callable[[str], None] = print, progress: bool = True,
             into: dict[str, list[dict[str, Any]]] | None = None
             ) -> dict[str, list[dict[str, Any]]]:
    """Every clip through every setup, interleaved conversation by conversation (so that
    a change of machine load affects every setup alike); rows per setup name, also filled
    into `into` as they come (what an interrupted run had done)."""
    caches = caches or Caches()
    pipes = [EnginePipeline(s, caches, echo) for s in setups]
    rows: dict[str, list[dict[str, Any]]] = into if into is not None else {}
    for s in setups:
        rows.setdefault(s.name, [])
    convs: dict[str, list[ds.Clip]] = {}
    for clip in clips:
        convs.setdefault(clip.conversation, []).append(clip)
    k = 0
    try:
        for turns in convs.values():
            samples: dict[str, Any] = {}
            for clip in turns:
                try:
                    samples[clip.id] = ds.load(clip, cache_dir)
                except ds.ClipError as exc:
                    samples[clip.id] = exc
                    echo(f'  error: {exc}')
            for pipe in pipes:
                pipe.reset()
                broken = False
                for clip in turns:
                    audio = samples[clip.id]
                    if isinstance(audio, ds.ClipError) or broken:
                        broken = True
                        row = error_row(clip, str(audio) if isinstance(audio, ds.ClipError)
                                        else f'{clip.id}: an earlier turn of this '
                                        'conversation could not be used')
                    else:
                        row = pipe.turn(clip, audio)
                    row['setup'] = pipe.setup.name
                    rows[pipe.setup.name].append(row)
                    if progress:
                        echo(f'  {pipe.setup.name}: {progress_line(row)}')
            k += len(turns)
            if progress:
                echo(f'  [{k}/{len(clips)}]')
    finally:
        for pipe in pipes:
            pipe.close()
        caches.close()
    return rows


def progress_line(row: dict[str, Any]) -> str:
    """One line of progress for a turn: verdict, WER, latency, what was heard and the reply."""
    if row.get('error'):
        return f'{row["id"]:<36} ERROR'
    mark = 'ok ' if row['correct'] else ('-- ' if not row['scored'] else 'BAD')
    if row.get('rejected'):
        mark = f'REJ({row["rejected"]})'
    e2e = row['latency_ms'].get('e2e_ms')
    return (f'{row["id"]:<36} {mark} wer {row["wer"]:.2f} '
            f'e2e {e2e if e2e is None else round(e2e)} heard {row["transcript"][:40]!r} '
            f'-> {row["reply"][:50]!r}')


def setup_dict(setup: Setup) -> dict[str, Any]:
    """The setup as a plain dict (for the JSON document)."""
    return asdict(setup)
