"""The voice gate engine: VAD + wake word + endpointing + barge-in on 32 ms blocks.

Pure Python (no ROS). The node feeds microphone blocks (`process`), playback reference
(`playback`), transcripts (`on_transcript`) and push-to-talk / listen requests, and
publishes the returned outputs. Everything is on the capture clock (ns).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from wallie_audio.echo import EchoCanceller, EchoConfig, EchoInfo
from wallie_audio.endpoint import EndpointConfig, Endpointer, Kind
from wallie_audio.gate_outputs import (
    BARGE_IN,
    END_OF_TURN,
    SPEECH_PROBABLY_ENDED,
    SPEECH_RESUMED,
    SPEECH_START,
    TURN_DISCARDED,
    ActivityOut,
    InterruptOut,
    Output,
    PieceOut,
    StampOut,
    WakeOut,
    new_turn_id,
)
from wallie_audio.playback_tracker import BLOCK, BLOCK_NS, MS, RATE, PlaybackTracker
from wallie_audio.ring import AudioRing
from wallie_audio.vad import Vad
from wallie_audio.wake import NoWake, TranscriptWake, WakeEngine, WakeHit
from wallie_common.text import looks_complete

ECHO_MODES = ('suppress', 'half_duplex', 'off')
HOLD_MAX_NS = 500_000_000  # mic blocks wait at most this long for their playback reference
WAKE_TAIL_NS = 400_000_000  # speech ending this soon after the wake detection is the word's end

@dataclass(frozen=True)
class GateConfig:
    """Settings of the voice gate (built from the node's parameters by `config.gate_config`)."""

    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    pre_roll_ms: int = 300           # audio before the speech start sent with the first piece
    piece_ms: int = 160              # utterance audio is streamed in pieces of this length
    listen_timeout_ms: int = 5000    # after a wake word / push-to-talk: wait this long for speech
    followup_ms: int = 5000          # after a reply: next turn needs no wake word (0 = off)
    echo_mode: str = 'suppress'      # suppress | half_duplex | off
    barge_in: bool = True            # user speech during playback interrupts the reply
    barge_threshold: float = 0.6     # VAD probability needed on the echo-cancelled signal
    barge_min_speech_ms: int = 192   # qualifying speech needed to raise the interrupt
    barge_min_excess_db: float = 10.0  # residual above the echo-only expectation (dB)
    echo_holdoff_ms: int = 400       # no barge-in before the echo path is locked / this long
    playback_tail_ms: int = 300      # playback counts as "speaking" this long after it ends
    ring_seconds: float = 60.0       # microphone RAM ring length (<= 600)
    wake_phrase: str = ''            # transcript wake mode: phrase ASR must find
    # CPU: the acoustic wake engine runs only around voice activity. It idles until a block's
    # VAD probability reaches wake_vad_threshold (0 = always run it), then first catches up on
    # the last wake_buffer_ms of audio (so the start of the wake word is not lost) and keeps
    # running until wake_hangover_ms after the last such block.
    wake_vad_threshold: float = 0.2
    wake_buffer_ms: int = 1500
    wake_hangover_ms: int = 1000
    # The turn after a wake word starts this long before the point where the engine detected
    # the word (about where the word ended), so that a question said in the same breath
    # ("Wallie, what time is it?") keeps its first word.
    wake_backoff_ms: int = 250

    def __post_init__(self) -> None:
        if self.echo_mode not in ECHO_MODES:
            raise ValueError(f'echo_mode must be one of {ECHO_MODES}')
        if self.wake_buffer_ms < 0 or self.wake_hangover_ms < 0:
            raise ValueError('wake_buffer_ms and wake_hangover_ms must be >= 0')


@dataclass
class _GateTurn:
    turn_id: str
    reason: str                      # wake | always | followup | service | listen | barge_in
    floor_no: int                    # earliest ring block the pre-roll may use
    deadline_ns: int = 0             # armed: give up waiting for speech after this
    wake_phrase: str = ''
    in_speech: bool = False
    next_no: int = 0                 # next ring block to stream
    seq: int = 0
    speech_start_ns: int = 0
    wake_ns: int = 0                 # where the wake word was detected (0: no wake word)
    wake_floor_no: int = 0           # first block after the word (detection - backoff)


@dataclass
class GateStats:
    """Counters and echo state of the voice gate since it was built (the node reports them in
    diagnostics)."""

    blocks: int = 0
    speech_blocks: int = 0
    wakes: int = 0
    turns: int = 0
    discarded: int = 0
    barge_ins: int = 0
    echo_locked: bool = False
    echo_delay_ms: float = float('nan')
    echo_erle_db: float = 0.0        # smoothed ERLE of the last block with a locked echo path
    wake_blocks: int = 0             # blocks the wake engine actually processed
    barge_held: int = 0              # barge-in blocks not judged: their reference was late
    ref_lost_frames: int = 0         # reference frames missing (gaps in the player's seq)
    complete_endpoints: int = 0      # early transcripts read as complete (shorter endpoint)


class VoiceGate:
    """Turn-taking logic around VAD, wake word, endpointer, echo canceller and RAM ring."""

    def __init__(self, config: GateConfig, vad: Vad, wake: WakeEngine | None = None,
                 echo: EchoCanceller | None = None) -> None:
        self.config = config
        self.vad = vad
        self.wake: WakeEngine = wake or NoWake()
        self.echo = echo or EchoCanceller(EchoConfig())
        self.endpointer = Endpointer(config.endpoint)
        self.ring = AudioRing(config.ring_seconds, RATE, BLOCK)
        self.stats = GateStats()
        self.playback_tracker = PlaybackTracker(self.echo, config.playback_tail_ms)
        self._turn: _GateTurn | None = None
        self._accepted_end_ns = 0            # end of the last accepted turn (follow-up)
        self._pending_accept: dict[str, int] = {}  # transcript mode: turn -> end stamp
        self._barge_count = 0
        self._barge_start_ns = 0
        self._barge_voiced = 0
        self._last_prob = 0.0
        self._ptt = False
        self._held: deque[tuple[np.ndarray, int]] = deque()  # mic blocks awaiting reference
        self._wake_pending: deque[np.ndarray] = deque(maxlen=self._wake_buffer_blocks())
        self._wake_until_ns = 0              # wake engine runs until then (VAD-gated)

    def _wake_buffer_blocks(self) -> int:
        return max(1, math.ceil(self.config.wake_buffer_ms * MS / BLOCK_NS))

    # -- configuration ---------------------------------------------------------------
    def reconfigure(self, config: GateConfig) -> None:
        """Apply new parameters live (the current turn continues)."""
        self.config = config
        self.playback_tracker.tail_ms = config.playback_tail_ms
        self.endpointer.reconfigure(config.endpoint)
        if self._wake_pending.maxlen != self._wake_buffer_blocks():
            self._wake_pending = deque(self._wake_pending, maxlen=self._wake_buffer_blocks())
        if config.ring_seconds != self.ring.seconds:
            old = self.ring
            self.ring = AudioRing(config.ring_seconds, RATE, BLOCK)
            self.ring.next_no = old.next_no

    def set_wake(self, wake: WakeEngine) -> None:
        self.wake = wake
        self._wake_pending.clear()
        self._wake_until_ns = 0

    @property
    def needs_wake(self) -> bool:
        return bool(getattr(self.wake, 'acoustic', False))

    @property
    def turn_id(self) -> str:
        return self._turn.turn_id if self._turn else ''

    @property
    def in_turn(self) -> bool:
        return self._turn is not None and self._turn.in_speech

    # -- inputs ----------------------------------------------------------------------
    def playback(self, samples16k: np.ndarray, stamp_ns: int, stream_id: str,
                 seq: int = 0) -> list[Output]:
        """A reference block (float32 mono 16 kHz) that becomes audible at `stamp_ns`;
        `seq` is the player's frame counter (0: none): a gap in it is a lost span.
        Returns the outputs of microphone blocks that were waiting for this reference."""
        self.stats.ref_lost_frames += self.playback_tracker.reference(
            samples16k, stamp_ns, stream_id, seq)
        return self._release()

    def reference_lost(self, start_ns: int, end_ns: int) -> list[Output]:
        """Reference frames audible over [start_ns, end_ns) did not arrive (or not yet: a
        later frame came first). The echo of that audio cannot be cancelled, so blocks
        whose echo window overlaps the span wait for it (bounded), then are not judged
        for barge-in unless it arrived."""
        self.playback_tracker.add_hole(start_ns, end_ns)
        return self._release()

    def playback_started(self, stream_id: str, stamp_ns: int) -> list[Output]:
        """The player's FIRST_AUDIBLE: a reply is audible from `stamp_ns`; until it is
        finished or flushed the gate counts as speaking even where its reference is late."""
        self.playback_tracker.started(stream_id, stamp_ns)
        return self._release()

    def playback_done(self, stream_id: str = '', end_ns: int = 0) -> list[Output]:
        """The player finished or flushed a reply whose audio was audible until `end_ns`
        (0: unknown). No reference is coming for later audio, but the reference up to
        `end_ns` may still be on its way: the event and the reference travel on different
        topics, and the reply's echo goes on in the room until `end_ns` regardless.
        Returns the outputs of microphone blocks that were waiting for its reference."""
        self.playback_tracker.done(stream_id, end_ns)
        return self._release()

    def open_turn(self, reason: str, now_ns: int, turn_id: str = '') -> tuple[str, list[Output]]:
        """Arm a turn without a wake word (push-to-talk, listen action)."""
        out: list[Output] = []
        if self._turn is not None and self._turn.in_speech:
            return self._turn.turn_id, out
        tid = turn_id or new_turn_id()
        self._turn = _GateTurn(tid, reason, floor_no=self.ring.next_no,
                           deadline_ns=now_ns + self.config.listen_timeout_ms * MS)
        self.endpointer.reset()
        out.append(WakeOut(reason, 'service', 1.0, tid, now_ns))
        return tid, out

    def push_to_talk(self, on: bool, now_ns: int) -> tuple[str, list[Output]]:
        """Push-to-talk pressed (open a turn) or released (end it now)."""
        self._ptt = on
        if on:
            return self.open_turn('service', now_ns)
        out: list[Output] = []
        if self._turn is None:
            return '', out
        tid = self._turn.turn_id
        ev = self.endpointer.finish_now(now_ns, 'push_to_talk')
        if ev is None or not self._turn.in_speech:
            out += self._discard(now_ns, 'push-to-talk released before speech')
        elif ev.kind is Kind.END:
            out += self._end(ev.stamp_ns, ev.speech_end_ns, ev.probability, ev.reason)
        else:
            out += self._discard(now_ns, ev.reason)
        return tid, out

    def on_transcript(self, turn_id: str, text: str, is_final: bool, now_ns: int,
                      early: bool = False, speech_end_ns: int = 0) -> list[Output]:
        """A transcript of a turn.

        Early final (`early`): if it reads as a complete turn and still covers all the
        speech (`speech_end_ns`, the end it was made for, is the current one), the turn
        ends after `complete_silence_ms` of silence instead of `min_silence_ms` -- at once
        if that much silence has passed.
        Final, transcript wake mode: a final that contains the phrase accepts the turn."""
        if early and not is_final:
            return self._early_transcript(turn_id, text, now_ns, speech_end_ns)
        out: list[Output] = []
        if not is_final or turn_id not in self._pending_accept:
            return out
        end_ns = self._pending_accept.pop(turn_id)
        if isinstance(self.wake, TranscriptWake) and self.wake.matches(text):
            self._accepted_end_ns = max(self._accepted_end_ns, end_ns)
            self.stats.wakes += 1
            out.append(WakeOut(self.wake.phrase.replace(' ', '_'), 'transcript', 1.0,
                               turn_id, now_ns))
        return out

    def _early_transcript(self, turn_id: str, text: str, now_ns: int,
                          speech_end_ns: int) -> list[Output]:
        turn, ep = self._turn, self.endpointer
        if turn is None or turn.turn_id != turn_id or not turn.in_speech or self._ptt \
                or not ep.trailing or self.config.endpoint.complete_silence_ms <= 0:
            return []
        if speech_end_ns and speech_end_ns + BLOCK_NS < ep.probable_speech_end_ns:
            return []                       # made before the user spoke again: stale
        if not looks_complete(text):
            return []
        ev = ep.complete(max(now_ns, ep.last_voiced_end_ns))
        self.stats.complete_endpoints += 1
        if ev is None:
            return []
        if ev.kind is Kind.END:
            return self._end(ev.stamp_ns, ev.speech_end_ns, ev.probability, ev.reason)
        return self._discard(ev.stamp_ns, ev.reason)

    # -- the block loop --------------------------------------------------------------
    def process(self, block: np.ndarray, stamp_ns: int) -> list[Output]:
        """One float32 mono 16 kHz block of BLOCK samples captured at `stamp_ns`.

        While a reply plays, a block whose playback reference has not arrived yet waits
        (bounded by HOLD_MAX_NS) so that it is judged against its echo; the outputs of
        blocks released later come back from `process`, `playback` or `playback_done`."""
        if self._held or self._must_wait(stamp_ns):
            self._held.append((block, stamp_ns))
            return self._release()
        return self._process(block, stamp_ns)

    def _must_wait(self, stamp_ns: int) -> bool:
        if self.config.echo_mode != 'suppress' or not self.playback_tracker.speaking(stamp_ns):
            return False
        return not self.playback_tracker.reference_known(stamp_ns)

    def _release(self) -> list[Output]:
        out: list[Output] = []
        while self._held:
            block, stamp = self._held[0]
            newest = self._held[-1][1]
            if newest - stamp < HOLD_MAX_NS and self._must_wait(stamp):
                break
            self._held.popleft()
            out += self._process(block, stamp)
        return out

    @property
    def held_blocks(self) -> int:
        return len(self._held)

    def _process(self, block: np.ndarray, stamp_ns: int) -> list[Output]:
        c = self.config
        out: list[Output] = []
        self.stats.blocks += 1
        speaking = self.playback_tracker.speaking(stamp_ns)
        info = EchoInfo()
        x = block
        if speaking and c.echo_mode == 'suppress':
            x, info = self.echo.process(block, stamp_ns)
            self.stats.echo_locked = self.echo.delay >= 0
            if info.locked:
                # blocks without reference (pauses, the playback tail) carry no estimate:
                # keep the last one instead of reporting 0 dB / NaN
                self.stats.echo_delay_ms = info.delay_ms
                self.stats.echo_erle_db = info.erle_avg_db
        elif not speaking and c.echo_mode == 'suppress':
            self.echo.process(block, stamp_ns)      # keeps noise floor / history current
        self.ring.push((np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16), stamp_ns)
        half_duplex_mute = speaking and c.echo_mode == 'half_duplex' and not self.in_turn
        prob = 0.0 if half_duplex_mute else self.vad.prob(x)
        self._last_prob = prob
        if prob >= c.endpoint.threshold:
            self.stats.speech_blocks += 1

        # wake word (only while idle: not speaking, no turn in speech)
        if self.needs_wake and not speaking and not self.in_turn and not self._ptt:
            hit = self._wake_step(x, prob, stamp_ns)
            if hit is not None:
                self.stats.wakes += 1
                tid = new_turn_id()
                # where the word was detected; speech that goes on from there (the
                # question in the same breath) is kept from `wake_backoff_ms` before it
                det_ns = stamp_ns + BLOCK_NS - hit.samples_after * 1_000_000_000 // RATE
                back = self.ring.block_at(det_ns - c.wake_backoff_ms * MS) + 1
                self._turn = _GateTurn(tid, 'wake', floor_no=self.ring.next_no,
                                   deadline_ns=stamp_ns + c.listen_timeout_ms * MS,
                                   wake_ns=det_ns,
                                   wake_floor_no=min(back, self.ring.next_no))
                self.endpointer.reset()
                out.append(WakeOut(hit.keyword, hit.engine, hit.score, tid, stamp_ns))
                return out
        else:
            self._wake_pending.clear()          # the engine restarts from fresh audio

        # barge-in while the reply plays
        if speaking and not self.in_turn:
            out += self._barge(prob, info, stamp_ns)
            if not self.in_turn:
                self.endpointer.reset()
                out += self._check_timeout(stamp_ns)
                return out

        for ev in self.endpointer.step(prob, stamp_ns, BLOCK_NS):
            if ev.kind is Kind.START:
                out += self._start(ev.speech_start_ns, ev.stamp_ns, ev.probability)
            elif self._turn is None or not self._turn.in_speech:
                continue
            elif ev.kind is Kind.PROBABLY_ENDED:
                out += self._stream(force=True)
                out.append(ActivityOut(SPEECH_PROBABLY_ENDED, self._turn.turn_id, ev.stamp_ns,
                                       ev.probability, ev.speech_start_ns, ev.speech_end_ns))
            elif ev.kind is Kind.RESUMED:
                out.append(ActivityOut(SPEECH_RESUMED, self._turn.turn_id, ev.stamp_ns,
                                       ev.probability, ev.speech_start_ns))
            elif ev.kind is Kind.END and self._turn.wake_ns and \
                    ev.speech_end_ns <= self._turn.wake_ns + WAKE_TAIL_NS:
                # the end of the wake word itself (detected before it was over): keep
                # listening for the question
                out += self._discard(ev.stamp_ns, 'only the end of the wake word')
            elif ev.kind is Kind.END:
                out += self._end(ev.stamp_ns, ev.speech_end_ns, ev.probability, ev.reason)
            elif ev.kind is Kind.DISCARD:
                out += self._discard(ev.stamp_ns, ev.reason)
        if self.in_turn:
            out += self._stream(force=False)
        out += self._check_timeout(stamp_ns)
        return out

    # -- helpers ---------------------------------------------------------------------
    def _wake_step(self, x: np.ndarray, prob: float, stamp_ns: int) -> WakeHit | None:
        """Feed the wake engine, but only around voice activity (see GateConfig)."""
        c = self.config
        if c.wake_vad_threshold <= 0.0:
            self.stats.wake_blocks += 1
            return self.wake.process(x)
        self._wake_pending.append(x)
        if prob >= c.wake_vad_threshold:
            self._wake_until_ns = stamp_ns + BLOCK_NS + c.wake_hangover_ms * MS
        if stamp_ns >= self._wake_until_ns:
            return None                          # idle: audio waits in the bounded buffer
        n = len(self._wake_pending)
        audio = self._wake_pending[0] if n == 1 else np.concatenate(self._wake_pending)
        self._wake_pending.clear()
        self.stats.wake_blocks += n
        return self.wake.process(audio)

    def _followup_open(self, stamp_ns: int) -> bool:
        c = self.config
        if c.followup_ms <= 0 or self._accepted_end_ns <= 0:
            return False
        since = max(self._accepted_end_ns, self.echo.timeline.last_write_ns)
        return stamp_ns <= since + c.followup_ms * MS

    def _start(self, speech_start_ns: int, now_ns: int, prob: float,
               reason: str = '') -> list[Output]:
        c = self.config
        turn = self._turn
        phrase = ''
        if turn is None:
            if self.needs_wake and not self._followup_open(now_ns):
                return []
            if isinstance(self.wake, TranscriptWake) and not self._followup_open(now_ns):
                phrase = self.wake.phrase
            why = reason or ('followup' if self._followup_open(now_ns) else 'always')
            turn = _GateTurn(new_turn_id(), why, floor_no=self.ring.oldest_no)
            self._turn = turn
        turn.in_speech = True
        turn.wake_phrase = phrase
        turn.speech_start_ns = speech_start_ns
        pre_no = self.ring.block_at(speech_start_ns - c.pre_roll_ms * MS)
        floor = turn.floor_no
        if turn.wake_ns and speech_start_ns <= turn.wake_ns + 2 * BLOCK_NS:
            # no pause after the wake word: the question began while it was being detected
            floor, pre_no = turn.wake_floor_no, turn.wake_floor_no
        turn.next_no = max(pre_no, floor, self.ring.oldest_no)
        turn.seq = 0
        self.stats.turns += 1
        out: list[Output] = [ActivityOut(SPEECH_START, turn.turn_id, now_ns, prob,
                                         speech_start_ns)]
        out += self._stream(force=True)
        return out

    def _stream(self, force: bool, final: bool = False, discarded: bool = False,
                speech_end_ns: int = 0) -> list[Output]:
        turn = self._turn
        if turn is None:
            return []
        pending = self.ring.next_no - turn.next_no
        if not (force or final) and pending * BLOCK < self.config.piece_ms * RATE // 1000:
            return []
        if pending <= 0 and not final:
            return []
        samples, stamp = self.ring.read(turn.next_no)
        turn.next_no = self.ring.next_no
        piece = PieceOut(turn.turn_id, turn.seq, samples, stamp, final, discarded,
                         turn.wake_phrase, turn.speech_start_ns, speech_end_ns)
        turn.seq += 1
        return [piece]

    def _end(self, now_ns: int, speech_end_ns: int, prob: float,
             reason: str = 'silence') -> list[Output]:
        turn = self._turn
        assert turn is not None
        out = self._stream(force=True, final=True, speech_end_ns=speech_end_ns)
        out.append(ActivityOut(END_OF_TURN, turn.turn_id, now_ns, prob, turn.speech_start_ns,
                               speech_end_ns, reason))
        out.append(StampOut(turn.turn_id, 'speech_end', speech_end_ns))
        out.append(StampOut(turn.turn_id, 'endpoint', now_ns))
        if turn.wake_phrase:
            self._pending_accept[turn.turn_id] = now_ns
            while len(self._pending_accept) > 16:
                self._pending_accept.pop(next(iter(self._pending_accept)))
        else:
            self._accepted_end_ns = now_ns
        self._turn = None
        return out

    def _discard(self, now_ns: int, reason: str) -> list[Output]:
        turn = self._turn
        if turn is None:
            return []
        out: list[Output] = []
        self.stats.discarded += 1
        if turn.in_speech:
            out += self._stream(force=True, final=True, discarded=True)
            out.append(ActivityOut(TURN_DISCARDED, turn.turn_id, now_ns, self._last_prob,
                                   turn.speech_start_ns, reason=reason))
            # a wake/service turn keeps listening until its deadline
            if turn.reason in ('wake', 'service', 'listen') and now_ns < turn.deadline_ns:
                self._turn = _GateTurn(new_turn_id(), turn.reason, floor_no=self.ring.next_no,
                                   deadline_ns=turn.deadline_ns)
                return out
        else:
            out.append(ActivityOut(TURN_DISCARDED, turn.turn_id, now_ns, self._last_prob,
                                   reason=reason))
        self._turn = None
        return out

    def _check_timeout(self, stamp_ns: int) -> list[Output]:
        turn = self._turn
        if turn is None or turn.in_speech or turn.deadline_ns <= 0 or self._ptt:
            return []
        if stamp_ns >= turn.deadline_ns:
            return self._discard(stamp_ns, 'no speech after the wake word / listen request')
        return []

    def _barge(self, prob: float, info: EchoInfo, stamp_ns: int) -> list[Output]:
        c = self.config
        if not c.barge_in or c.echo_mode == 'half_duplex':
            return []
        if c.echo_mode == 'suppress' and not self.playback_tracker.reference_known(stamp_ns):
            # The reference of this block's echo has not arrived yet (the player's frames
            # can be processed after the microphone's on a starved machine): the canceller
            # could not remove that echo, so this block can neither confirm nor refute
            # user speech. Hold the count; judge the blocks that have their reference.
            self.stats.barge_held += 1
            return []
        qualifies = prob >= c.barge_threshold
        if qualifies and c.echo_mode == 'suppress' and info.active:
            if info.locked:
                qualifies = info.excess_db >= c.barge_min_excess_db
            else:
                since = self.playback_tracker.speaking_since_ns
                qualifies = stamp_ns - since >= c.echo_holdoff_ms * MS
        if qualifies:
            if self._barge_count == 0:
                self._barge_start_ns = stamp_ns
                self._barge_voiced = 0
            self._barge_count += 1
            self._barge_voiced += BLOCK_NS
        else:
            self._barge_count = max(0, self._barge_count - 1)
        need = math.ceil(c.barge_min_speech_ms * MS / BLOCK_NS)
        if self._barge_count < max(1, need):
            return []
        self._barge_count = 0
        self.stats.barge_ins += 1
        reply = self.playback_tracker.reply_turn
        now = stamp_ns + BLOCK_NS
        out: list[Output] = [InterruptOut(reply, now), StampOut(reply, 'interrupt', now)]
        tid = new_turn_id()
        self._turn = _GateTurn(tid, 'barge_in', floor_no=self.ring.oldest_no)
        lead_ms = (self.echo.timeline.last_write_ns - stamp_ns - BLOCK_NS) / MS
        out.append(ActivityOut(BARGE_IN, tid, now, prob, self._barge_start_ns, reason=(
            f'vad={prob:.2f} echo active={info.active} locked={info.locked} '
            f'excess={info.excess_db:.1f}dB erle={info.erle_avg_db:.1f}dB '
            f'reference_lead={lead_ms:.0f}ms')))
        self.endpointer.force_speech(self._barge_start_ns, self._barge_voiced, now)
        out += self._start(self._barge_start_ns, now, prob, 'barge_in')
        return out
