"""Benchmark of the audio front end (engines only, no ROS): `python -m wallie_audio.bench`.

Reports, over espeak-ng fixtures generated deterministically at start:
- CPU per 32 ms frame of the voice gate (VAD (Silero) + wake (openWakeWord hey_jarvis) +
  endpointing), median / p95 / mean, over repeated runs (thread CPU time, so other load on
  the machine matters less), for idle listening (room noise only) and for a wake + question
  turn; with the wake engine VAD-gated (default) and always running (wake.vad_threshold=0);
- endpoint error (ms): detected acoustic speech end vs the fixture's known speech end, with
  the configured vad.end_offset_ms, and the raw VAD lag it compensates;
- false / missed wakes on fixtures with and without the wake word (several voices, noise),
  gated and always-on;
- false barge-ins on own echo and detected barge-ins on user speech over echo (with ERLE);
- flush latency of the player engine (interrupt -> output silent), null sink.
Writes JSON (default: bench-results/wallie_audio_bench.json, git-ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from wallie_audio import fixtures as F
from wallie_audio.echo import EchoCanceller
from wallie_audio.playout import Playout
from wallie_audio.sinks import NullSink
from wallie_audio.vad import GatedVad, SileroVad
from wallie_audio.voice_gate import (
    END_OF_TURN,
    ActivityOut,
    GateConfig,
    InterruptOut,
    VoiceGate,
    WakeOut,
)
from wallie_audio.wake import NoWake, OpenWakeWord

T0 = 1_700_000_000 * 10**9
QUESTIONS = ('what is the capital of france', 'set a timer for ten minutes',
             'turn off the lights in the kitchen please')


def stats(xs) -> dict:
    """n, median, p95, mean, max and min of `xs` ({'n': 0} when empty)."""
    a = np.asarray(xs, dtype=float)
    if a.size == 0:
        return {'n': 0}
    return {'n': int(a.size), 'median': float(np.median(a)), 'p95': float(np.percentile(a, 95)),
            'mean': float(a.mean()), 'max': float(a.max()), 'min': float(a.min())}


def feed(gate, audio, t0=T0, cpu=None):
    """Run `audio` through `gate` in 32 ms blocks from `t0` and return its outputs; each block's
    CPU ms goes to `cpu` if given."""
    outs = []
    for k in range(audio.shape[0] // 512):
        b = audio[k * 512:(k + 1) * 512]
        t = time.thread_time_ns()
        outs += gate.process(b, t0 + k * 32_000_000)
        if cpu is not None:
            cpu.append((time.thread_time_ns() - t) / 1e6)
    return outs


def bench_cpu(repeats: int) -> dict:
    """Voice gate CPU per 32 ms frame, idle and in a turn, for each VAD and wake gating variant,
    with the share of frames the wake engine ran."""
    from wallie_audio.vad import WebRtcPrefilter
    scenes = {
        'idle': F.scene([('silence', 10.0)], noise_db=-55),
        'turn': F.scene([('silence', 2.0), ('wake', ('hey jarvis', 'en-us')), ('silence', 0.3),
                         ('speech', (QUESTIONS[0], 'en-us')), ('silence', 3.0)],
                        noise_db=-55),
    }
    variants = (('silero+oww gated', 0.2, False), ('silero+oww always', 0.0, False),
                ('webrtc+silero+oww gated', 0.2, True))
    out: dict = {}
    for scene_name, sc in scenes.items():
        for name, gate_th, prefilter in variants:
            per_frame: list[float] = []
            wake_frac = []
            for _ in range(repeats):
                vad = GatedVad(SileroVad(), WebRtcPrefilter(2) if prefilter else None)
                gate = VoiceGate(GateConfig(wake_vad_threshold=gate_th), vad,
                                 OpenWakeWord(['hey_jarvis']))
                feed(gate, sc.audio, cpu=per_frame)
                wake_frac.append(gate.stats.wake_blocks / max(1, gate.stats.blocks))
            s = stats(per_frame)
            s['core_percent_mean'] = s['mean'] / 32.0 * 100
            s['wake_engine_share'] = float(np.mean(wake_frac))
            out[f'{scene_name}: {name}'] = s
    return out


def bench_endpoint() -> dict:
    """End-of-turn error against the fixtures' known speech end, and the raw VAD lag with the
    end offset it suggests."""
    errs = []
    lags = []
    rows = []
    vad = SileroVad()
    config = GateConfig()
    offset = config.endpoint.end_offset_ms
    for voice in F.VOICES:
        for q in QUESTIONS:
            for noise in (None, -45.0):
                sc = F.scene([('silence', 1.0), ('speech', (q, voice)), ('silence', 1.5)],
                             noise_db=noise)
                vad.reset()
                outs = feed(VoiceGate(config, GatedVad(vad), NoWake()), sc.audio)
                ends = [o for o in outs if isinstance(o, ActivityOut) and o.kind == END_OF_TURN]
                if not ends:
                    rows.append({'voice': voice, 'text': q, 'noise_db': noise, 'missed': True})
                    continue
                truth = sc.segments[0].end_s * 1000
                err = (ends[-1].speech_end_ns - T0) / 1e6 - truth
                decide = (ends[-1].stamp_ns - T0) / 1e6 - truth
                errs.append(err)
                lags.append(err + offset)
                rows.append({'voice': voice, 'text': q, 'noise_db': noise, 'turns': len(ends),
                             'speech_end_error_ms': round(err, 1),
                             'endpoint_after_speech_end_ms': round(decide, 1)})
    return {'end_offset_ms': offset, 'speech_end_error_ms': stats(errs),
            'abs_error_ms': stats(np.abs(errs)), 'raw_vad_lag_ms': stats(lags),
            'suggested_end_offset_ms': int(round(float(np.median(lags)))) if lags else None,
            'cases': rows}


def bench_wake() -> dict:
    """Missed and false wakes of openWakeWord hey_jarvis, VAD-gated and always on."""
    oww = OpenWakeWord(['hey_jarvis'])
    vad = SileroVad()
    out: dict = {'engine': 'openwakeword/hey_jarvis'}
    cases = []
    for voice in F.VOICES:
        for noise in (None, -40.0):
            for with_wake in (True, False):
                parts: list = [('silence', 0.8)]
                if with_wake:
                    parts += [('wake', ('hey jarvis', voice)), ('silence', 0.3)]
                parts += [('speech', (QUESTIONS[1], voice)), ('silence', 1.2)]
                cases.append((with_wake, F.scene(parts, noise_db=noise)))
    # speech right before the wake word (the gated engine must not lose its start)
    for voice in F.VOICES:
        cases.append((True, F.scene([('silence', 0.5), ('speech', (QUESTIONS[2], voice)),
                                     ('silence', 0.4), ('wake', ('hey jarvis', voice)),
                                     ('silence', 1.0)], noise_db=-50.0)))
    for name, gate_th in (('gated', GateConfig().wake_vad_threshold), ('always', 0.0)):
        pos = neg = missed = false = 0
        for with_wake, sc in cases:
            oww.reset()
            vad.reset()
            gate = VoiceGate(GateConfig(followup_ms=0, wake_vad_threshold=gate_th),
                             GatedVad(vad), oww)
            wakes = [o for o in feed(gate, sc.audio) if isinstance(o, WakeOut)]
            if with_wake:
                pos += 1
                missed += not wakes
            else:
                neg += 1
                false += bool(wakes)
        out[name] = {'positives': pos, 'missed': missed, 'negatives': neg,
                     'false_wakes': false}
    return out


def bench_echo() -> dict:
    """False barge-ins on echo alone and missed ones on user speech over echo, for several echo
    delays and gains (with ERLE)."""
    reply = F.synth('The capital of France is Paris. It is a large city with many museums, '
                    'and the river Seine flows through it.') * 0.5
    user = F.synth('stop, what about germany', 'en-us+f3')
    user = user * (0.5 / float(np.max(np.abs(user))))
    rows: list[dict] = []
    for delay, gain in ((20, 0.3), (60, 0.5), (120, 0.8), (200, 0.6)):
        for with_user in (False, True):
            mic = F.echo_path(reply, delay, gain)
            mic = np.concatenate([mic, np.zeros(16000, np.float32)])
            if with_user:
                mic[32000:32000 + user.shape[0]] += user
            mic += np.random.default_rng(0).normal(0, 10 ** (-55 / 20), mic.shape).astype(
                np.float32)
            gate = VoiceGate(GateConfig(), GatedVad(SileroVad()), NoWake(), EchoCanceller())
            ints = []
            for k in range(mic.shape[0] // 512):
                i = k * 512
                if i < reply.shape[0]:
                    gate.playback(reply[i:i + 512], T0 + i * 62500, 'r')
                for o in gate.process(mic[i:i + 512], T0 + i * 62500):
                    if isinstance(o, InterruptOut):
                        ints.append(k * 32.0)
            rows.append({'delay_ms': delay, 'gain': gain, 'user_speech': with_user,
                         'interrupts': len(ints),
                         'barge_in_after_user_start_ms': (ints[0] - 2000.0) if ints and
                         with_user else None, 'erle_db': round(gate.stats.echo_erle_db, 1)})
    false = sum(int(r['interrupts']) for r in rows if not r['user_speech'])
    missed = sum(1 for r in rows if r['user_speech'] and not r['interrupts'])
    return {'false_barge_ins': false, 'missed_barge_ins': missed, 'cases': rows}


def bench_flush(repeats: int) -> dict:
    """Player flush latency (ms, interrupt to silent) over `repeats` flushes on a null sink."""
    lat = []
    for _ in range(repeats):
        reports: list = []
        po = Playout(NullSink(16000), 20, on_report=reports.append)
        po.enqueue('x', 0, np.zeros(16000 * 3, np.float32), 16000, True, True)
        time.sleep(0.3)
        po.flush('x', time.time_ns())
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not any(r.event == 'flushed' for r in reports):
            time.sleep(0.001)
        lat += [r.flush_ms for r in reports if r.event == 'flushed']
        po.close()
    return {'flush_ms': stats(lat)}


def main(argv=None) -> None:
    """Run every audio benchmark, print a summary and write the JSON results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--out', default='bench-results/wallie_audio_bench.json',
                    help='JSON output file (directories are created)')
    args = ap.parse_args(argv)
    res = {'config': _jsonable(dataclasses.asdict(GateConfig())),
           'cpu_per_frame_ms': bench_cpu(args.repeats), 'endpoint': bench_endpoint(),
           'wake': bench_wake(), 'echo': bench_echo(), 'flush': bench_flush(args.repeats * 4)}
    print('CPU per 32 ms frame (voice gate: VAD + wake + endpointing), ms:')
    for k, v in res['cpu_per_frame_ms'].items():
        print(f"  {k:32s} median {v['median']:.3f}  p95 {v['p95']:.3f}  mean {v['mean']:.3f}"
              f"  ({v['core_percent_mean']:.1f}% of a core; wake engine on "
              f"{v['wake_engine_share'] * 100:.0f}% of frames)")
    ep = res['endpoint']
    e, lag = ep['speech_end_error_ms'], ep['raw_vad_lag_ms']
    print(f"Speech-end error vs fixtures (ms, vad.end_offset_ms={ep['end_offset_ms']}): "
          f"median {e['median']:.1f} p95 {e['p95']:.1f} min {e['min']:.1f} max {e['max']:.1f}"
          f" (n={e['n']}); |error| median {ep['abs_error_ms']['median']:.1f}")
    print(f"  raw VAD lag (offset 0): median {lag['median']:.1f} -> suggested "
          f"vad.end_offset_ms {ep['suggested_end_offset_ms']}")
    for name in ('gated', 'always'):
        w = res['wake'][name]
        print(f"Wake ({name:6s}): missed {w['missed']}/{w['positives']}, false "
              f"{w['false_wakes']}/{w['negatives']}")
    ec = res['echo']
    erle = [c['erle_db'] for c in ec['cases'] if not c['user_speech']]
    print(f"Echo: false barge-ins {ec['false_barge_ins']}, missed barge-ins "
          f"{ec['missed_barge_ins']} over {len(ec['cases'])} cases; ERLE (echo only) "
          f"{min(erle):.1f}..{max(erle):.1f} dB")
    f = res['flush']['flush_ms']
    print(f"Flush (ms): median {f['median']:.2f} p95 {f['p95']:.2f} max {f['max']:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f'wrote {out}')


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


if __name__ == '__main__':
    main()
