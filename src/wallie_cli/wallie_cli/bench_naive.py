"""The naive baseline of `wallie bench`: the same models, strictly one stage after another.

Record the whole utterance (until the gate's own Silero VAD endpointer, run here on the
fixture with the same parameters, confirms the end by silence: a sequential pipeline has no
transcript before its endpoint, so no early end on a complete sentence), transcribe it,
generate the whole reply, synthesise the whole reply, play (first sample = as soon as
synthesis is done), using the stage engines directly (wallie_asr.engine, wallie_llm engines,
wallie_tts engines) in this process. Same conversation handling (history for follow-ups).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from typing import Any, Callable

import numpy as np

from wallie_cli import fixture_set, wavs


def full_params(params: dict[str, dict[str, Any]], node: str, package: str,
                executable: str) -> dict[str, Any]:
    """A node's parameter values: its declared defaults, then the merged configuration."""
    from wallie_bringup import config as wconfig
    table = wconfig.node_param_table(package, executable) or {}
    values = {name: p.default for name, p in table.items()}
    values.update(wconfig.for_node(params, node))
    return values


class NaivePipeline:
    """Record -> transcribe -> whole reply -> synthesise whole reply -> play, in sequence."""

    def __init__(self, params: dict[str, dict[str, Any]],
                 echo: Callable[[str], None] = lambda line: None) -> None:
        from wallie_asr.config import engine_from_params as asr_engine_from_params
        from wallie_asr.engine import WhisperEngine
        from wallie_llm.config import (
            chunker_from_params,
            engine_from_params,
            generation_from_params,
            memory_from_params,
        )
        from wallie_llm.engine import create_engine
        from wallie_llm.memory import ConversationMemory
        from wallie_llm.reply import ReplyGenerator
        from wallie_tts.config import engine_from_params as tts_engine_from_params
        from wallie_tts.config import stream_from_params as tts_stream_from_params
        from wallie_tts.engine import load_engine
        from wallie_tts.stream import ChunkSynthesizer
        asr_p = full_params(params, 'asr', 'wallie_asr', 'asr_node')
        llm_p = full_params(params, 'llm', 'wallie_llm', 'llm_node')
        tts_p = full_params(params, 'tts', 'wallie_tts', 'tts_node')
        gate_p = full_params(params, 'voice_gate', 'wallie_audio', 'voice_gate_node')
        self.silence_ms = float(gate_p.get('endpoint.min_silence_ms', 400))
        self.gate_params = gate_p
        self._vad: Any = None
        t0 = time.perf_counter()
        self.asr = WhisperEngine(asr_engine_from_params(asr_p))
        self.asr.load()
        echo(f'  naive: ASR loaded ({time.perf_counter() - t0:.1f} s)')
        t0 = time.perf_counter()
        self.llm = create_engine(engine_from_params(llm_p))
        self.llm.load()
        mcfg = memory_from_params(llm_p)
        self.memory = ConversationMemory(
            mcfg.system_prompt, self.llm.count_tokens,
            history_max_tokens=mcfg.history_max_tokens,
            prompt_budget_tokens=max(64, self.llm.context_tokens - 16),
            idle_timeout_s=0.0, summarize_dropped=mcfg.summarize_dropped)
        self.gen = ReplyGenerator(self.llm, self.memory, generation_from_params(llm_p),
                                  chunker_from_params(llm_p), mcfg.voice_commands)
        self.gen.prepare()          # the same prefix cache the node uses
        echo(f'  naive: LLM loaded ({time.perf_counter() - t0:.1f} s)')
        t0 = time.perf_counter()
        self.tts = load_engine(tts_engine_from_params(tts_p)).engine
        self.synth = ChunkSynthesizer(self.tts, tts_stream_from_params(tts_p))
        self.synth.synthesize_all('Hello.')
        echo(f'  naive: TTS loaded ({time.perf_counter() - t0:.1f} s)')
        self._n = 0

    def reset(self) -> None:
        self.memory.reset()

    def vad_endpoint_ms(self, audio: np.ndarray, rate: int, speech_end_s: float) -> float:
        """Endpoint wait of the gate's own VAD endpointer on this audio, run in process
        with the same parameters but without the transcript shortcut (a sequential
        pipeline has no transcript before its endpoint): true speech end -> END."""
        from wallie_audio.config import endpoint_config
        from wallie_audio.endpoint import Endpointer, Kind
        from wallie_audio.vad import SileroVad
        from wallie_audio.voice_gate import BLOCK, BLOCK_NS
        if self._vad is None:
            self._vad = SileroVad(self.gate_params.get('vad.model_path') or None)
        if rate != wavs.RATE:
            import soxr
            audio = soxr.resample(audio, rate, wavs.RATE).astype(np.float32)
        cfg = dataclasses.replace(endpoint_config(self.gate_params), complete_silence_ms=0)
        ep = Endpointer(cfg)
        self._vad.reset()
        tail = np.zeros(int(cfg.min_silence_ms * wavs.RATE / 1000) + 4 * BLOCK, np.float32)
        x = np.concatenate([audio.astype(np.float32), tail])
        for i in range(len(x) // BLOCK):
            block = x[i * BLOCK:(i + 1) * BLOCK]
            for ev in ep.step(self._vad.prob(block), i * BLOCK_NS, BLOCK_NS):
                if ev.kind is Kind.END and ev.stamp_ns / 1e9 > speech_end_s:
                    return ev.stamp_ns / 1e6 - speech_end_s * 1e3
        return self.silence_ms

    def turn(self, f: dict[str, Any], endpoint_ms: float | None = None) -> dict[str, Any]:
        """One turn; `endpoint_ms`: the endpoint wait to charge (default: the gate's VAD
        endpointer run on the fixture without the transcript shortcut)."""
        from wallie_cli import bag_files
        from wallie_tts.normalize import normalize
        audio = bag_files.read_audio_bag(f['bag_path']).samples.astype(np.float32) / 32768.0
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        rate = int(f.get('sample_rate', wavs.RATE))
        wait_ms = (self.vad_endpoint_ms(audio, rate, float(f['speech_end_s']))
                   if endpoint_ms is None else float(endpoint_ms))
        # the whole utterance as a recorder with the same endpointing hands it over
        end = int((float(f['speech_end_s']) + wait_ms / 1000) * rate)
        utterance = audio[:end]
        t0 = time.perf_counter()
        text = self.asr.transcribe(utterance, vad_speech=True).text
        t1 = time.perf_counter()
        self._n += 1
        res = self.gen.run(f'naive-{self._n}', text, threading.Event()) if text else None
        reply = res.text if res is not None else ''
        if res is not None:
            self.gen.commit(res)
        t2 = time.perf_counter()
        wave = self.synth.synthesize_all(normalize(reply), first=False) if reply else None
        t3 = time.perf_counter()
        lat = {'endpoint_ms': wait_ms, 'asr_ms': (t1 - t0) * 1e3,
               'llm_ms': (t2 - t1) * 1e3, 'tts_ms': (t3 - t2) * 1e3}
        lat['e2e_ms'] = sum(lat.values())
        return {'fixture': f['name'], 'transcript': text, 'reply': reply,
                'answered': bool(reply and wave is not None and wave.size),
                'correct': fixture_set.contains_fact(reply, f.get('expected_fact', [])),
                'reply_audio_s': (wave.size / self.synth.settings.output_rate_hz
                                  if wave is not None else 0.0),
                'latency_ms': lat}

    def close(self) -> None:
        for engine in (self.asr, self.llm, self.tts):
            try:
                engine.close()
            except Exception:
                pass


def run_naive(fixtures: list[dict[str, Any]], repeats: int, params: dict[str, dict[str, Any]],
              echo: Callable[[str], None], warmup: bool = True,
              endpoint_ms: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """The naive pipeline over the fixtures; `endpoint_ms`: fixture -> endpoint wait."""
    endpoint_ms = endpoint_ms or {}
    pipe = NaivePipeline(params, echo)
    rows: list[dict[str, Any]] = []
    try:
        if warmup and fixtures:
            pipe.reset()
            pipe.turn(fixtures[0])
        total = repeats * len(fixtures)
        for k, (rep, f) in enumerate(itertools.product(range(repeats), fixtures), 1):
            if fixture_set.starts_conversation(f):
                pipe.reset()
            row = pipe.turn(f, endpoint_ms.get(f['name']))
            row['repeat'] = rep
            rows.append(row)
            lat = row['latency_ms']
            echo(f'  [{k:>3}/{total}] {f["name"]:<40} e2e {lat["e2e_ms"]:>5.0f} ms  '
                 f'(endpoint {lat["endpoint_ms"]:.0f}, asr {lat["asr_ms"]:.0f}, llm '
                 f'{lat["llm_ms"]:.0f}, tts {lat["tts_ms"]:.0f})  '
                 f'{"ok " if row["correct"] else "WRONG"} {row["reply"][:60]!r}')
    finally:
        pipe.close()
    return rows
