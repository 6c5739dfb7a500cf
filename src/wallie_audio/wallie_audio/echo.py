"""Echo handling for barge-in: remove Wallie's own voice from the microphone signal.

The player publishes what it plays, stamped with the time each block becomes audible.
Those reference blocks go on a 16 kHz timeline. For each 32 ms microphone block:

1. the bulk echo delay is estimated by GCC-PHAT cross-correlation between the last ~0.5 s of
   microphone audio and the reference (re-estimated every few blocks while Wallie talks);
2. a frequency-domain block NLMS adaptive filter (overlap-save, 512 taps = 32 ms around the
   bulk delay) models the echo path; it is seeded with the least-squares gain at lock time so
   it is useful from the first block, and adaptation freezes during double talk;
3. the residual (microphone minus estimated echo) is what the VAD sees.

The gate decides barge-in from the VAD on the residual plus the residual-to-echo ratio.
Pure numpy; no ROS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 16000
BLOCK = 512
NS = 1_000_000_000
NOISE_FLOOR = 1e-10                # lowest noise-floor energy (exact-zero fixture silence)


def _energy(x: np.ndarray) -> float:
    return float(np.dot(x, x)) / max(1, x.shape[0])


def _db(ratio: float) -> float:
    return float(10.0 * np.log10(max(ratio, 1e-12)))


class ReferenceTimeline:
    """The played reference on an absolute 16 kHz sample timeline (bounded ring)."""

    def __init__(self, seconds: float = 4.0, rate: int = RATE) -> None:
        self.rate = rate
        self.size = int(seconds * rate)
        self._ring = np.zeros(self.size, dtype=np.float32)
        self._end = -1              # absolute index one past the newest written sample
        self.last_write_ns = 0      # stamp (audible time) of the end of the newest block

    def index(self, stamp_ns: int) -> int:
        return (int(stamp_ns) * self.rate) // NS

    def write(self, samples: np.ndarray, stamp_ns: int) -> None:
        n = samples.shape[0]
        if n == 0:
            return
        if n > self.size:
            samples = samples[-self.size:]
            stamp_ns += (n - self.size) * NS // self.rate
            n = self.size
        start = self.index(stamp_ns)
        if self._end < 0 or start - self._end >= self.size:
            self._ring[:] = 0.0
        elif start > self._end:
            self._put(self._end, np.zeros(start - self._end, dtype=np.float32))
        self._put(start, samples.astype(np.float32, copy=False))
        self._end = max(self._end, start + n)
        self.last_write_ns = max(self.last_write_ns, stamp_ns + n * NS // self.rate)

    def _put(self, start: int, x: np.ndarray) -> None:
        i = start % self.size
        k = min(x.shape[0], self.size - i)
        self._ring[i:i + k] = x[:k]
        if k < x.shape[0]:
            self._ring[:x.shape[0] - k] = x[k:]

    def read(self, start: int, n: int) -> np.ndarray:
        """Samples [start, start + n) by absolute index; zeros where nothing was played."""
        out = np.zeros(n, dtype=np.float32)
        lo = max(start, self._end - self.size)
        hi = min(start + n, self._end)
        if self._end < 0 or hi <= lo:
            return out
        i = lo % self.size
        k = hi - lo
        first = min(k, self.size - i)
        out[lo - start:lo - start + first] = self._ring[i:i + first]
        if first < k:
            out[lo - start + first:hi - start] = self._ring[:k - first]
        return out


def gcc_phat(mic: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag L in [0, max_lag] maximising the PHAT-weighted correlation of mic[n] with
    ref[n + max_lag - L] (ref is mic's window extended by max_lag samples into the past).
    Returns (L, peak sharpness: peak / mean |corr|)."""
    n = mic.shape[0] + ref.shape[0]
    nfft = 1 << (n - 1).bit_length()
    m = np.fft.rfft(mic, nfft)
    r = np.fft.rfft(ref, nfft)
    cross = m * np.conj(r)
    cross /= np.abs(cross) + 1e-9
    cc = np.fft.irfft(cross, nfft)
    # mic[n] ~ ref[n + max_lag - L]  ->  correlation index -(max_lag - L) (negative lags
    # live at the end of the circular result).
    lags = np.arange(0, max_lag + 1)
    idx = (-(max_lag - lags)) % nfft
    vals = cc[idx]
    best = int(np.argmax(vals))
    sharp = float(vals[best] / (np.mean(np.abs(vals)) + 1e-9))
    return int(lags[best]), sharp


@dataclass(frozen=True)
class EchoConfig:
    """Settings of the echo canceller: delay search range, filter, step size and
    delay-estimation cadence."""

    max_delay_ms: int = 250         # longest echo path delay searched
    margin: int = 64                # filter taps before the bulk delay (estimation slack)
    mu: float = 0.2                 # NLMS step size
    lock_corr: float = 0.3          # correlation needed to trust a delay estimate
    estimate_every: int = 4         # blocks between delay estimates while the reference plays
    window_ms: int = 512            # microphone window for delay estimation


@dataclass
class EchoInfo:
    """What the echo canceller found for one microphone block: delay lock, levels, ERLE and
    double talk."""

    active: bool = False            # reference present around this block
    locked: bool = False            # a delay estimate is trusted
    delay_ms: float = float('nan')
    corr: float = 0.0
    mic_db: float = -120.0
    residual_db: float = -120.0
    echo_db: float = -120.0         # estimated echo energy
    erle_db: float = 0.0            # mic / residual, this block
    erle_avg_db: float = 0.0        # smoothed ERLE over echo-only blocks (convergence)
    excess_db: float = 0.0          # residual above what echo-only would leave (near-end talk)
    double_talk: bool = False
    diverged: bool = False          # residual exceeded the mic: estimate ignored


class EchoCanceller:
    """Delay estimate + FDAF echo canceller against a ReferenceTimeline."""

    def __init__(self, config: EchoConfig | None = None,
                 timeline: ReferenceTimeline | None = None) -> None:
        self.config = config or EchoConfig()
        self.timeline = timeline or ReferenceTimeline()
        self._win = int(self.config.window_ms * RATE / 1000)
        self._mic_tl = ReferenceTimeline(2.0)  # mic history by capture time (gaps -> zeros)
        self._W = np.zeros(BLOCK + 1, dtype=np.complex128)
        self._P = np.full(BLOCK + 1, 1e-6)
        self._x_old = np.zeros(BLOCK, dtype=np.float64)
        self._blocks = 0
        self.delay = -1                # samples; -1 = not locked
        self.corr = 0.0
        self.erle_avg = 0.0            # dB, EMA over echo-only blocks
        self.noise = 1e-6              # microphone noise floor (energy), slow minimum tracker

    def _estimate(self, end_idx: int) -> None:
        c = self.config
        max_lag = int(c.max_delay_ms * RATE / 1000)
        win = self._win
        mic = self._mic_tl.read(end_idx - win, win)
        ref = self.timeline.read(end_idx - win - max_lag, win + max_lag)
        if _energy(ref) < 1e-7 or _energy(mic) < 1e-8:
            return
        lag, _sharp = gcc_phat(mic.astype(np.float64), ref.astype(np.float64), max_lag)
        aligned = ref[max_lag - lag:max_lag - lag + win]
        denom = float(np.sqrt(np.dot(aligned, aligned) * np.dot(mic, mic))) + 1e-12
        corr = float(np.dot(aligned, mic)) / denom
        if corr < c.lock_corr:
            return
        if self.delay < 0 or abs(lag - self.delay) > c.margin // 2:
            # (Re)lock: seed the filter with the least-squares gain at the margin tap.
            gain = float(np.dot(aligned, mic) / (np.dot(aligned, aligned) + 1e-12))
            taps = np.zeros(2 * BLOCK)
            taps[c.margin] = gain
            self._W = np.fft.rfft(taps)
            self.delay = lag
            self._x_old[:] = self.timeline.read(end_idx - BLOCK - BLOCK - lag + c.margin,
                                                BLOCK)
        self.corr = corr

    def process(self, mic: np.ndarray, stamp_ns: int) -> tuple[np.ndarray, EchoInfo]:
        """Cancel the echo in one BLOCK-sample microphone block captured at `stamp_ns`."""
        c = self.config
        info = EchoInfo()
        start = self.timeline.index(stamp_ns)
        end = start + mic.shape[0]
        n = mic.shape[0]
        self._mic_tl.write(mic, stamp_ns)     # history for the delay estimator
        max_lag = int(c.max_delay_ms * RATE / 1000)
        near = self.timeline.read(start - max_lag, max_lag + n)
        em = _energy(mic)
        info.mic_db = _db(em)
        # a block of exact zeros must not pin the tracker at 0 (0 * 1.01 stays 0)
        self.noise = max(NOISE_FLOOR, em if em < self.noise else self.noise * 1.01)
        info.active = _energy(near) > 1e-8
        if not info.active or mic.shape[0] != BLOCK:
            info.residual_db = info.mic_db
            return mic, info
        self._blocks += 1
        if self.delay < 0 or self._blocks % c.estimate_every == 0:
            self._estimate(end)
        info.locked = self.delay >= 0
        info.corr = self.corr
        if not info.locked:
            info.residual_db = info.mic_db
            return mic, info
        info.delay_ms = self.delay * 1000.0 / RATE
        x_new = self.timeline.read(start - self.delay + c.margin, BLOCK).astype(np.float64)
        X = np.fft.rfft(np.concatenate([self._x_old, x_new]))
        self._x_old = x_new
        y = np.fft.irfft(X * self._W)[BLOCK:]
        d = mic.astype(np.float64)
        e = d - y
        ey, ee = _energy(y), _energy(e)
        info.echo_db = _db(ey)
        info.residual_db = _db(ee)
        info.erle_db = info.mic_db - info.residual_db
        # Near-end speech leaves residual the filter cannot explain: compare the residual
        # with what echo-only would leave (echo estimate / converged ERLE + noise floor).
        expected = ey / (10.0 ** (self.erle_avg / 10.0)) + self.noise
        diverged = ee > em
        if diverged:
            # Residual louder than the microphone itself: the estimate no longer matches
            # the echo path (it vanished or changed), so subtracting it only adds energy.
            # Never count that as user speech: judge the block on the microphone signal.
            info.residual_db = info.mic_db
            info.erle_db = 0.0
        info.diverged = diverged
        info.excess_db = _db(min(ee, em) / max(expected, NOISE_FLOOR))
        ref_on = _energy(x_new) > 1e-8 and ey > 1e-10
        converged = self.erle_avg >= 6.0
        info.double_talk = converged and info.excess_db > 6.0
        if ref_on and not info.double_talk and not diverged:
            self.erle_avg = 0.9 * self.erle_avg + 0.1 * min(info.erle_db, 40.0)
        info.erle_avg_db = self.erle_avg
        if ref_on and not info.double_talk:
            self._P = 0.8 * self._P + 0.2 * np.abs(X) ** 2
            E = np.fft.rfft(np.concatenate([np.zeros(BLOCK), e]))
            G = c.mu * np.conj(X) * E / (self._P + 1e-6 * (np.mean(self._P) + 1e-9))
            g = np.fft.irfft(G)
            g[BLOCK:] = 0.0                       # gradient constraint (linear conv.)
            self._W += np.fft.rfft(g)
        if diverged:
            return mic, info
        return e.astype(np.float32), info
