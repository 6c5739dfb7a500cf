"""A simulated room microphone for conversation tests: it hears the player's output through an
echo path, a noise floor, and the user's speech."""

from __future__ import annotations

import threading
import time
from typing import Any, Mapping

import numpy as np

from wallie_cli.feed import Feed
from wallie_cli.observer import Observer
from wallie_cli.wavs import FRAME_MS, NS, RATE, GraphError, speech_bounds


class EchoMic:
    """A simulated microphone: the player's output through an echo path, noise, the user.

    Publishes 32 ms AudioFrames on audio/in in real time (stamped with the capture time of
    their first sample, published when their last sample is due). What the player publishes
    on audio/playback (the audible reference, stamped with its audible time) comes back
    ``delay_ms`` later at ``gain``, with a weaker reflection, plus white noise at
    ``noise_db`` dBFS; :meth:`say` mixes the user's speech in at a given time.

    A real echo is there whether or not the player's reference has been published yet, but
    this microphone only knows what was played from that reference. So while a reply plays
    (from the player's FIRST_AUDIBLE to the audible end its FINISHED/FLUSHED reports: the
    event can overtake the last reference frames), a frame whose echo window the reference
    does not cover yet waits for it, up to ``ref_wait_s``; the frame then
    goes out late with its capture stamp, as a starved capture thread's would. Frames that
    still had to be made without their reference are counted in ``late_frames``.
    """

    def __init__(self, observer: Observer, delay_ms: float = 60.0, gain: float = 0.5,
                 noise_db: float = -55.0, seed: int = 0, ref_wait_s: float = 1.0) -> None:
        from wallie_audio.echo import ReferenceTimeline
        from wallie_common.conversions import audio_to_frame, frame_to_audio
        from wallie_common.qos import AUDIO_QOS, EVENT_QOS
        from wallie_interfaces.msg import AudioFrame, PlaybackEvent
        self._to_frame = audio_to_frame
        self._from_frame = frame_to_audio
        self.node = observer.node
        self.pub = self.node.create_publisher(AudioFrame, 'audio/in', AUDIO_QOS)
        self.timeline = ReferenceTimeline(20.0)
        self.lock = threading.Lock()
        self._sub = self.node.create_subscription(AudioFrame, 'audio/playback', self._on_ref,
                                                  AUDIO_QOS)
        self._evt = PlaybackEvent
        self._sub_events = self.node.create_subscription(PlaybackEvent, 'playback/events',
                                                         self._on_event, EVENT_QOS)
        self._playing: dict[str, tuple[int, int]] = {}  # reply -> audible (start, end | 0)
        self.ref_wait_s = ref_wait_s
        self._last_ref_mono = 0.0
        self.late_frames = 0
        self.delay = int(delay_ms * RATE / 1000)
        self.gain = gain
        self.noise = 10 ** (noise_db / 20)
        self._speech: list[tuple[int, np.ndarray]] = []   # (start stamp ns, samples)
        self.ref_frames = 0
        self.ref_lateness_ms: list[float] = []
        self.stop_event = threading.Event()
        self.rng = np.random.default_rng(seed)
        self.thread = threading.Thread(target=self._run, name='e2e-echo-mic', daemon=True)

    def _on_ref(self, msg: Any) -> None:
        a = self._from_frame(msg)
        with self.lock:
            self.timeline.write(a.mono, a.stamp_ns)
            self.ref_frames += 1
            self._last_ref_mono = time.monotonic()
            # > 0: the reference arrived after the time it says it became audible
            self.ref_lateness_ms.append((time.time_ns() - a.stamp_ns) / 1e6)
            del self.ref_lateness_ms[:-5000]

    def _on_event(self, msg: Any) -> None:
        from wallie_common import timeutil
        with self.lock:
            start = timeutil.from_msg(msg.first_audible)
            if msg.event == self._evt.FIRST_AUDIBLE:
                self._playing[msg.turn_id] = (start, 0)
                self._last_ref_mono = time.monotonic()      # its reference is due
                while len(self._playing) > 8:       # a lost FINISHED must not pin it
                    self._playing.pop(next(iter(self._playing)))
            elif msg.event in (self._evt.FINISHED, self._evt.FLUSHED) and start > 0:
                self._playing[msg.turn_id] = (start, start + int(msg.played_s * NS))

    def _echo_missing(self, t: int, n: int) -> bool:
        """The frame at `t` overlaps a playing reply whose reference has not arrived."""
        need = t + n * NS // RATE - self.delay * NS // RATE
        with self.lock:
            have = self.timeline.last_write_ns
            for sid, (start, end) in list(self._playing.items()):
                if end and have >= end:
                    del self._playing[sid]          # all of it arrived
            # a player silent for a second has stalled or lost its FINISHED: stop waiting
            if time.monotonic() - self._last_ref_mono >= 1.0:
                return False
            return any(need > start and have < (min(need, end) if end else need)
                       for start, end in self._playing.values())

    def start(self) -> 'EchoMic':
        self.thread.start()
        return self

    def say(self, samples: np.ndarray, at_ns: int | None = None,
            bounds_s: tuple[float, float] | None = None, name: str = 'speech') -> Feed:
        """Mix `samples` (16 kHz mono, int16 or float) in from `at_ns` (default: 0.2 s from
        now). Returns the feed with the speech bounds on the graph clock: `bounds_s` (start,
        end in seconds into `samples`, e.g. a fixture's truth) or estimated from the audio."""
        x = np.asarray(samples)
        if x.ndim > 1:
            x = x.mean(axis=1)
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        x = x.astype(np.float32)
        at = time.time_ns() + 200_000_000 if at_ns is None else int(at_ns)
        with self.lock:
            self._speech.append((at, x))
        feed = Feed(name=name, start_ns=at, duration_s=x.shape[0] / RATE,
                    truth='fixture' if bounds_s else 'estimate')
        b = bounds_s or speech_bounds(x)
        if b is not None:
            feed.speech_start_ns = at + int(b[0] * NS)
            feed.speech_end_ns = at + int(b[1] * NS)
        feed.end_wall_ns = at + int(feed.duration_s * NS)
        return feed

    def say_fixture(self, fixture: Mapping[str, Any], at_ns: int | None = None) -> Feed:
        """Mix a fixture bag's audio in (its sidecar's speech bounds are the truth)."""
        from wallie_cli import bag_files
        audio = bag_files.read_audio_bag(fixture['bag_path'])
        if audio.rate != RATE:
            raise GraphError(f'{fixture["name"]}: {audio.rate} Hz (expected {RATE})')
        bounds = None
        if fixture.get('speech') and fixture.get('speech_end_s') is not None:
            bounds = (float(fixture['speech_start_s']), float(fixture['speech_end_s']))
        feed = self.say(audio.samples, at_ns, bounds, name=str(fixture.get('name', 'fixture')))
        feed.sidecar = dict(fixture)
        return feed

    def _run(self) -> None:
        n = RATE * FRAME_MS // 1000
        t = time.time_ns() - FRAME_MS * 1_000_000
        seq = 0
        while not self.stop_event.is_set():
            wait = (t + FRAME_MS * 1_000_000 - time.time_ns()) / NS
            if wait > 0 and self.stop_event.wait(wait):
                return
            deadline = time.monotonic() + self.ref_wait_s
            while self._echo_missing(t, n) and time.monotonic() < deadline:
                if self.stop_event.wait(0.005):
                    return
            self.late_frames += self._echo_missing(t, n)
            idx = self.timeline.index(t)
            with self.lock:
                ref = self.timeline.read(idx - self.delay, n)
                tail = self.timeline.read(idx - self.delay - 120, n)
                speech = list(self._speech)
            x = self.gain * (ref + 0.3 * tail) + self.rng.normal(0, self.noise, n)
            for at, s in speech:
                off = (t - at) * RATE // NS
                if -n < off < s.shape[0]:
                    lo, hi = max(0, off), min(s.shape[0], off + n)
                    seg = np.zeros(n, np.float32)
                    seg[lo - off:hi - off] = s[lo:hi]
                    x = x + seg
            with self.lock:
                self._speech = [(a, s) for a, s in self._speech
                                if (t - a) * RATE // NS < s.shape[0]]
            seq += 1
            self.pub.publish(self._to_frame(np.clip(x, -1, 1).astype(np.float32), RATE, t,
                                            seq=seq, frame_id='echo_mic'))
            t += FRAME_MS * 1_000_000

    def close(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(2.0)
        try:
            self.node.destroy_subscription(self._sub)
            self.node.destroy_subscription(self._sub_events)
            self.node.destroy_publisher(self.pub)
        except Exception:
            pass
