"""Bounded RAM ring of recent microphone audio (never written to disk).

The brief promises that microphone audio lives only in RAM, at most 10 minutes. The ring
holds fixed blocks with their capture stamps and a running block number, so the voice gate
can take pre-roll and stream a turn by block number.
"""

from __future__ import annotations

from collections import deque
from typing import Iterator

import numpy as np

MAX_SECONDS = 600.0          # hard cap: 10 minutes, whatever the parameter says


class AudioRing:
    """The last `seconds` of audio as (block number, stamp_ns, int16 samples) blocks."""

    def __init__(self, seconds: float, rate: int = 16000, block: int = 512) -> None:
        if seconds <= 0:
            raise ValueError('ring length must be > 0 s')
        self.seconds = min(float(seconds), MAX_SECONDS)
        self.rate = rate
        self.block = block
        self.capacity = max(1, int(self.seconds * rate / block))
        self._blocks: deque[tuple[int, int, np.ndarray]] = deque(maxlen=self.capacity)
        self.next_no = 0

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def bytes_used(self) -> int:
        return sum(b[2].nbytes for b in self._blocks)

    def push(self, samples: np.ndarray, stamp_ns: int) -> int:
        """Store one block; return its block number."""
        no = self.next_no
        self._blocks.append((no, int(stamp_ns), np.asarray(samples, dtype=np.int16)))
        self.next_no += 1
        return no

    @property
    def oldest_no(self) -> int:
        return self._blocks[0][0] if self._blocks else self.next_no

    def block_at(self, stamp_ns: int) -> int:
        """Number of the block that contains `stamp_ns` (clamped to what is held)."""
        dur = self.block * 1_000_000_000 // self.rate
        for no, stamp, _ in reversed(self._blocks):
            if stamp <= stamp_ns < stamp + dur or stamp <= stamp_ns:
                return no
        return self.oldest_no

    def _iter_from(self, no: int) -> Iterator[tuple[int, int, np.ndarray]]:
        if not self._blocks:
            return
        first = self._blocks[0][0]
        start = max(0, no - first)
        for i in range(start, len(self._blocks)):
            yield self._blocks[i]

    def read(self, start_no: int, end_no: int | None = None) -> tuple[np.ndarray, int]:
        """Samples of blocks [start_no, end_no) and the stamp of the first one."""
        end_no = self.next_no if end_no is None else end_no
        parts: list[np.ndarray] = []
        stamp = 0
        for no, st, samples in self._iter_from(start_no):
            if no >= end_no:
                break
            if not parts:
                stamp = st
            parts.append(samples)
        if not parts:
            return np.zeros(0, dtype=np.int16), 0
        return np.concatenate(parts), stamp

    def clear(self) -> None:
        self._blocks.clear()
