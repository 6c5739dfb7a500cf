"""Benchmark of the audio front end (engines only, no ROS): `python -m wallie_audio.bench`.

Reports, over espeak-ng fixtures generated deterministically at start:
- CPU per 32 ms frame for VAD (Silero) + wake (openWakeWord hey_jarvis), median / p95 / mean,
  over repeated runs (thread CPU time, so other load on the machine matters less);
- endpoint error (ms): detected acoustic speech end vs the fixture's known speech end;
- false / missed wakes on fixtures with and without the wake word (several voices, noise);
- false barge-ins on own echo and detected barge-ins on user speech over echo;
- flush latency of the player engine (interrupt -> output silent), null sink.
Writes JSON (default: wallie_audio_bench.json).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from wallie_audio import fixtures as F
from wallie_audio.echo import EchoCanceller
from wallie_audio.gate import (
    END_OF_TURN,
    ActivityOut,
    GateConfig,
    InterruptOut,
    VoiceGate,
    WakeOut,
)
from wallie_audio.playout import Playout
from wallie_audio.sinks import NullSink
from wallie_audio.vad import GatedVad, SileroVad
from wallie_audio.wake import NoWake, OpenWakeWord

T0 = 1_700_000_000 * 10**9
QUESTIONS = ('what is the capital of france', 'set a timer for ten minutes',
             'turn off the lights in the kitchen please')


def stats(xs) -> dict:
    a = np.asarray(xs, dtype=float)
    if a.size == 0:
        return {'n': 0}
    return {'n': int(a.size), 'median': float(np.median(a)), 'p95': float(np.percentile(a, 95)),
            'mean': float(a.mean()), 'max': float(a.max()), 'min': float(a.min())}


def feed(gate, audio, t0=T0, cpu=None):
    outs = []
    for k in range(audio.shape[0] // 512):
        b = audio[k * 512:(k + 1) * 512]
        t = time.thread_time_ns()
        outs += gate.process(b, t0 + k * 32_000_000)
        if cpu is not None:
            cpu.append((time.thread_time_ns() - t) / 1e6)
    return outs


def bench_cpu(repeats: int) -> dict:
    sc = F.scene([('silence', 2.0), ('wake', ('hey jarvis', 'en-us')), ('silence', 0.3),
                  ('speech', (QUESTIONS[0], 'en-us')), ('silence', 3.0)], noise_db=-55)
    out = {}
    for name, prefilter in (('silero+oww', False), ('webrtc+silero+oww', True)):
        per_frame: list[float] = []
        for _ in range(repeats):
            from wallie_audio.vad import WebRtcPrefilter
            vad = GatedVad(SileroVad(), WebRtcPrefilter(2) if prefilter else None)
            gate = VoiceGate(GateConfig(), vad, OpenWakeWord(['hey_jarvis']))
            feed(gate, sc.audio, cpu=per_frame)
        s = stats(per_frame)
        s['core_percent_mean'] = s['mean'] / 32.0 * 100
        out[name] = s
    return out


def bench_endpoint() -> dict:
    errs = []
    rows = []
    vad = SileroVad()
    for voice in F.VOICES:
        for q in QUESTIONS:
            for noise in (None, -45.0):
                sc = F.scene([('silence', 1.0), ('speech', (q, voice)), ('silence', 1.5)],
                             noise_db=noise)
                vad.reset()
                outs = feed(VoiceGate(GateConfig(), vad, NoWake()), sc.audio)
                ends = [o for o in outs if isinstance(o, ActivityOut) and o.kind == END_OF_TURN]
                if not ends:
                    rows.append({'voice': voice, 'text': q, 'noise_db': noise, 'missed': True})
                    continue
                truth = sc.segments[0].end_s * 1000
                err = (ends[-1].speech_end_ns - T0) / 1e6 - truth
                decide = (ends[-1].stamp_ns - T0) / 1e6 - truth
                errs.append(err)
                rows.append({'voice': voice, 'text': q, 'noise_db': noise, 'turns': len(ends),
                             'speech_end_error_ms': round(err, 1),
                             'endpoint_after_speech_end_ms': round(decide, 1)})
    return {'speech_end_error_ms': stats(errs),
            'abs_error_ms': stats(np.abs(errs)), 'cases': rows}


def bench_wake() -> dict:
    oww = OpenWakeWord(['hey_jarvis'])
    vad = SileroVad()
    pos = neg = missed = false = 0
    for voice in F.VOICES:
        for noise in (None, -40.0):
            for with_wake in (True, False):
                parts: list = [('silence', 0.8)]
                if with_wake:
                    parts += [('wake', ('hey jarvis', voice)), ('silence', 0.3)]
                parts += [('speech', (QUESTIONS[1], voice)), ('silence', 1.2)]
                sc = F.scene(parts, noise_db=noise)
                oww.reset()
                vad.reset()
                gate = VoiceGate(GateConfig(followup_ms=0), vad, oww)
                wakes = [o for o in feed(gate, sc.audio) if isinstance(o, WakeOut)]
                if with_wake:
                    pos += 1
                    missed += not wakes
                else:
                    neg += 1
                    false += bool(wakes)
    return {'engine': 'openwakeword/hey_jarvis', 'positives': pos, 'missed': missed,
            'negatives': neg, 'false_wakes': false}


def bench_echo() -> dict:
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
            gate = VoiceGate(GateConfig(), SileroVad(), NoWake(), EchoCanceller())
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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--out', default='wallie_audio_bench.json')
    args = ap.parse_args(argv)
    res = {'cpu_per_frame_ms': bench_cpu(args.repeats), 'endpoint': bench_endpoint(),
           'wake': bench_wake(), 'echo': bench_echo(), 'flush': bench_flush(args.repeats * 4)}
    print('CPU per 32 ms frame (VAD + wake), ms:')
    for k, v in res['cpu_per_frame_ms'].items():
        print(f"  {k:20s} median {v['median']:.3f}  p95 {v['p95']:.3f}  mean {v['mean']:.3f}"
              f"  ({v['core_percent_mean']:.1f}% of a core)")
    e = res['endpoint']['speech_end_error_ms']
    print(f"Speech-end error vs fixtures (ms): median {e['median']:.1f} p95 {e['p95']:.1f} "
          f"min {e['min']:.1f} max {e['max']:.1f} (n={e['n']})")
    w = res['wake']
    print(f"Wake: missed {w['missed']}/{w['positives']}, false {w['false_wakes']}/"
          f"{w['negatives']}")
    ec = res['echo']
    print(f"Echo: false barge-ins {ec['false_barge_ins']}, missed barge-ins "
          f"{ec['missed_barge_ins']} over {len(ec['cases'])} cases")
    f = res['flush']['flush_ms']
    print(f"Flush (ms): median {f['median']:.2f} p95 {f['p95']:.2f} max {f['max']:.2f}")
    with open(args.out, 'w') as fh:
        json.dump(res, fh, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
