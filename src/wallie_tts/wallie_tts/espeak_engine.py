"""espeak-ng engine: the always-available fallback (Debian package ``espeak-ng``).

Pure Python (no ROS imports). Runs ``espeak-ng --stdout`` as a subprocess per piece of text (the
text goes through stdin, never the command line), reads the streamed WAV as it comes and
kills the process when asked to stop.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import threading
from typing import Iterator, Optional

import numpy as np

from wallie_tts.config import EspeakSettings
from wallie_tts.engine import EngineError, TtsEngine

_READ_BYTES = 8192


class EspeakEngine(TtsEngine):
    """espeak-ng through its command-line program."""

    name = 'espeak'

    def __init__(self, settings: EspeakSettings) -> None:
        self.settings = settings
        self._exe: Optional[str] = None
        self._rate = 22050

    @property
    def sample_rate(self) -> int:
        return self._rate

    def load(self) -> None:
        exe = shutil.which(self.settings.executable)
        if exe is None:
            raise EngineError(f'{self.settings.executable} not found on PATH: install it '
                              '(Debian/Ubuntu: apt-get install espeak-ng)')
        self._exe = exe
        # Learn the output rate from a tiny synthesis (espeak-ng voices are 22.05 kHz).
        with self._spawn('a') as proc:
            assert proc.stdout is not None
            header = proc.stdout.read(44)
            proc.stdout.read()
        self._rate = _parse_wav_header(header)

    def _spawn(self, text: str, speed: float = 1.0) -> subprocess.Popen:
        if self._exe is None:
            raise EngineError('espeak-ng engine is not loaded')
        wpm = int(min(450, max(80, self.settings.words_per_minute * speed)))
        cmd = [self._exe, '-v', self.settings.voice, '-s', str(wpm), '-b', '1', '--stdout']
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        try:
            proc.stdin.write(text.encode('utf-8', errors='replace'))
            proc.stdin.close()
        except BrokenPipeError as exc:  # espeak-ng died at once (bad voice name)
            proc.kill()
            raise EngineError(f'espeak-ng exited at start (voice {self.settings.voice!r}?)') \
                from exc
        return proc

    def synthesize(self, text: str, stop: threading.Event,
                   speed: float = 1.0) -> Iterator[np.ndarray]:
        proc = self._spawn(text, speed)
        assert proc.stdout is not None
        try:
            header = proc.stdout.read(44)
            if len(header) < 44:
                proc.wait(5)
                raise EngineError(f'espeak-ng produced no audio (exit code {proc.returncode}; '
                                  f'voice {self.settings.voice!r})')
            _parse_wav_header(header)
            carry = b''
            while not stop.is_set():
                data = proc.stdout.read1(_READ_BYTES) if hasattr(proc.stdout, 'read1') \
                    else proc.stdout.read(_READ_BYTES)
                if not data:
                    break
                data = carry + data
                usable = len(data) - len(data) % 2
                carry = data[usable:]
                if usable:
                    yield np.frombuffer(data[:usable], dtype='<i2').astype(np.float32) / 32768.0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait(5)

    def describe(self) -> str:
        return f'espeak-ng voice {self.settings.voice} @ {self._rate} Hz'


def _parse_wav_header(header: bytes) -> int:
    """Return the sample rate of espeak-ng's streamed 16-bit mono WAV header."""
    if len(header) < 44 or header[:4] != b'RIFF' or header[8:12] != b'WAVE':
        raise EngineError('espeak-ng did not produce a WAV stream')
    channels, rate = struct.unpack('<HI', header[22:28])
    bits = struct.unpack('<H', header[34:36])[0]
    if channels != 1 or bits != 16:
        raise EngineError(f'unexpected espeak-ng output: {channels} channels, {bits} bits')
    return int(rate)
