"""What the voice gate knows of the assistant's own voice (no ROS): which reply plays and
since when, which spans of its playback reference arrived or were lost, and from that
whether a microphone block is heard while the assistant speaks and whether the reference
of its echo is known yet. Everything is on the capture clock (ns).
"""

from __future__ import annotations

import numpy as np

from wallie_audio.echo import EchoCanceller

RATE = 16000
BLOCK = 512
BLOCK_NS = BLOCK * 1_000_000_000 // RATE
MS = 1_000_000
REF_LATE_MAX_NS = 1_000_000_000  # a reference this late means the player stalled, not lag
REF_HOLES_MAX = 32            # lost reference spans remembered


class PlaybackTracker:
    """The reply being played, and its playback reference as the echo canceller has it.

    The reference frames go into `echo`'s timeline; `tail_ms` is how long playback counts
    as speaking after its last reference block."""

    def __init__(self, echo: EchoCanceller, tail_ms: int) -> None:
        self.echo = echo
        self.tail_ms = tail_ms
        self.reply_turn = ''                 # stream id of the reply being played
        self.speaking_since_ns = 0           # when the assistant started speaking
        self._playback_open = False          # reference frames are still coming
        self._stream_active = False          # FIRST_AUDIBLE seen, no FINISHED/FLUSHED yet
        self._stream_start_ns = 0
        self._played_end_ns = 0              # audible end of the reply that just ended
        self._holes: list[tuple[int, int]] = []   # reference spans lost on the way
        self._ref_seq = 0                    # seq of the newest reference frame
        self._ref_end_ns = 0                 # its audible end

    # -- what the player reports -------------------------------------------------------
    def reference(self, samples16k: np.ndarray, stamp_ns: int, stream_id: str,
                  seq: int = 0) -> int:
        """A reference block (float32 mono 16 kHz) audible from `stamp_ns`; `seq` is the
        player's frame counter (0: none). Returns how many frames its seq says were lost."""
        end_ns = stamp_ns + samples16k.shape[0] * 1_000_000_000 // RATE
        last = self._ref_seq
        lost = 0
        if seq and last and seq > last + 1 and stamp_ns > self._ref_end_ns:
            # frames between the last one and this one were lost (best-effort transport)
            # or are late: no barge-in is judged against a reference the gate lacks
            lost = seq - last - 1
            self.add_hole(self._ref_end_ns, stamp_ns)
        if not seq or seq > last or end_ns > self._ref_end_ns:   # (an older frame fills in)
            self._ref_seq, self._ref_end_ns = seq, end_ns
        if not self._ref_speaking(stamp_ns) and not self._stream_active:
            self.speaking_since_ns = stamp_ns
        self.echo.timeline.write(samples16k, stamp_ns)
        if self._holes:
            self._fill_holes(stamp_ns, end_ns)
        self._playback_open = True
        if stream_id:
            self.reply_turn = stream_id
        return lost

    def add_hole(self, start_ns: int, end_ns: int) -> None:
        """Reference audible over [start_ns, end_ns) did not arrive (or not yet)."""
        if end_ns > start_ns:
            self._holes.append((start_ns, end_ns))
            del self._holes[:-REF_HOLES_MAX]

    def _fill_holes(self, start_ns: int, end_ns: int) -> None:
        keep: list[tuple[int, int]] = []
        oldest = end_ns - int(self.echo.timeline.size * 1e9 / RATE)
        for lo, hi in self._holes:
            if hi <= oldest:
                continue                    # off the timeline: no block needs it any more
            if end_ns <= lo or start_ns >= hi:
                keep.append((lo, hi))
                continue
            if lo < start_ns:
                keep.append((lo, start_ns))
            if end_ns < hi:
                keep.append((end_ns, hi))
        self._holes = keep

    def started(self, stream_id: str, stamp_ns: int) -> None:
        """The player's FIRST_AUDIBLE: a reply is audible from `stamp_ns`."""
        if not self._ref_speaking(stamp_ns) and not self._stream_active:
            self.speaking_since_ns = stamp_ns
        self._stream_active = True
        self._stream_start_ns = stamp_ns
        self._playback_open = True
        if stream_id:
            self.reply_turn = stream_id

    def done(self, stream_id: str = '', end_ns: int = 0) -> None:
        """The player finished or flushed a reply audible until `end_ns` (0: unknown)."""
        if not stream_id or stream_id == self.reply_turn:
            self._playback_open = False
            self._stream_active = False
            self._played_end_ns = end_ns

    # -- what the gate asks --------------------------------------------------------------
    def _ref_speaking(self, stamp_ns: int) -> bool:
        last = self.echo.timeline.last_write_ns
        return last > 0 and stamp_ns < last + self.tail_ms * MS

    def speaking(self, stamp_ns: int) -> bool:
        """True if the assistant's voice is (or may be) in the room at `stamp_ns`."""
        if self._ref_speaking(stamp_ns):
            return True
        if self._stream_start_ns < stamp_ns + BLOCK_NS and \
                stamp_ns < self._played_end_ns + self.tail_ms * MS:
            return True         # the ended reply was audible here; its reference is late
        if not self._stream_active or stamp_ns + BLOCK_NS <= self._stream_start_ns:
            return False
        # a reply stream is open: its reference may simply be late (CPU load); a player
        # silent for longer than REF_LATE_MAX_NS has stalled or lost its FINISHED event
        since = max(self.echo.timeline.last_write_ns, self._stream_start_ns)
        return stamp_ns - since <= REF_LATE_MAX_NS

    def reference_known(self, stamp_ns: int) -> bool:
        """True if the reference timeline covers the echo window of the block at stamp_ns
        (up to the block's end minus the locked echo delay), or playback has ended."""
        tl = self.echo.timeline
        delay_ns = max(0, self.echo.delay) * 1_000_000_000 // RATE
        need = stamp_ns + BLOCK_NS - delay_ns
        if not self._playback_open:
            need = min(need, self._played_end_ns)   # nothing after the end is coming
        # the echo window: the filter spans two blocks before the delayed block
        lo = stamp_ns - delay_ns - 2 * BLOCK_NS
        if any(h_lo < need and h_hi > lo for h_lo, h_hi in self._holes):
            return False
        if tl.last_write_ns >= need:
            return True
        since = max(tl.last_write_ns, self._stream_start_ns if self._stream_active else 0)
        return stamp_ns - since > REF_LATE_MAX_NS   # a stalled player: judge
