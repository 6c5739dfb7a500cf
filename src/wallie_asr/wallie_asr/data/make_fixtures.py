#!/usr/bin/env python3
"""Regenerate the ASR speech fixtures (committed): espeak-ng questions in three voices.

Run from anywhere: ``.venv/bin/python src/wallie_asr/wallie_asr/data/make_fixtures.py``.
Needs espeak-ng and sox (Debian packages). Writes <id>.flac (16 kHz mono, 0.3 s of leading
silence like the voice gate's pre-roll) and fixtures.json: id, text, voice, duration and the
acoustic speech end (last sample above -40 dBFS). Non-speech fixtures (silence, noise, tones)
are not stored: wallie_asr.fixtures makes them from a fixed seed.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
SR = 16000
PRE_ROLL_S = 0.3
SENTENCES = [
    ('time', 'what time is it'),
    ('lights', 'turn on the lights'),
    ('capital', 'what is the capital of france'),
    ('timer', 'set a timer for ten minutes'),
    ('spider', 'how many legs does a spider have'),
    ('remind', "remind me to call my mother at six o'clock this evening"),
    ('rainbow', 'can you explain how a rainbow forms after the rain stops'),
    ('weather', 'what is the weather going to be like tomorrow morning in london'),
]
VOICES = [('us', 'en-us', 165), ('gbf', 'en-gb+f3', 160), ('usm', 'en-us+m5', 150)]


def synth(text: str, voice: str, speed: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / 'raw.wav', Path(tmp) / 'out.wav'
        subprocess.run(['espeak-ng', '-v', voice, '-s', str(speed), '-w', str(raw), text],
                       check=True)
        subprocess.run(['sox', str(raw), '-r', str(SR), '-c', '1', '-b', '16', str(out)],
                       check=True)
        audio, _ = sf.read(out, dtype='float32')
    return audio


def main() -> None:
    entries = []
    for key, text in SENTENCES:
        for vkey, voice, speed in VOICES:
            audio = synth(text, voice, speed)
            voiced = np.nonzero(np.abs(audio) > 0.01)[0]
            audio = audio[:voiced[-1] + int(0.05 * SR)]           # trim trailing silence
            audio = np.concatenate([np.zeros(int(PRE_ROLL_S * SR), np.float32), audio])
            fid = f'{key}_{vkey}'
            sf.write(HERE / f'{fid}.flac', audio, SR, subtype='PCM_16')
            end = (np.nonzero(np.abs(audio) > 0.01)[0][-1] + 1) / SR
            entries.append({'id': fid, 'text': text, 'voice': voice, 'speed': speed,
                             'duration_s': round(audio.size / SR, 3),
                             'speech_end_s': round(float(end), 3)})
    (HERE / 'fixtures.json').write_text(json.dumps(entries, indent=1) + '\n')
    print(f'wrote {len(entries)} fixtures to {HERE}')


if __name__ == '__main__':
    main()
