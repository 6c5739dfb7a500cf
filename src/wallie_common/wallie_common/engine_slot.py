"""EngineSlot: a stage's engine, replaced in the background when a parameter needs a new
one (no ROS).

A node asks for a reload from its parameter callback; the slot builds the new engine on its
own loader thread (never the executor's), swaps it in under a lock and closes the old one.
Requests that come while one loads are not built side by side: the latest waits, the ones in
between are skipped, and an engine that finishes after a newer request (or after `close()`)
is closed instead of swapped in. So the latest request wins, and at most one engine loads
beside the running one.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Generic, Optional, TypeVar

E = TypeVar('E')

_LOG = logging.getLogger(__name__)


def _close(engine: object) -> None:
    engine.close()  # type: ignore[attr-defined]


class _Request(Generic[E]):
    def __init__(self, seq: int, build: Callable[[], E],
                 on_loaded: Optional[Callable[[E], None]],
                 on_failed: Optional[Callable[[Exception], None]]) -> None:
        self.seq = seq
        self.build = build
        self.on_loaded = on_loaded
        self.on_failed = on_failed


class EngineSlot(Generic[E]):
    """Holds a stage's current engine and replaces it in the background.

    - `set(engine)` opens the slot with the engine configure loaded; `close()` shuts it:
      the current engine (and one waiting to be swapped in) is closed, a load still running
      is closed when it ends, and nothing is swapped in until `set()` opens it again.
    - `reload(build)` runs `build()` on the loader thread. If it returns and is still the
      latest request, the engine is swapped in (`install(new)` runs under the swap lock, so
      the owner can wire it in atomically), the old one goes to `retire` (default: closed),
      then `on_loaded(new)` is called. If `build()` raises, the current engine stays and
      `on_failed(exc)` is called, again only for the latest request.
    - `deferred=True`: a loaded engine waits in `pending` until the owner calls `swap()` at
      a point that suits it (between two replies); a newer one replaces (and closes) it.

    `close` releases an engine (default: its `close()` method). The callbacks run on the
    loader thread, outside the slot's locks.
    """

    def __init__(self, name: str = 'engine', *, close: Callable[[E], None] = _close,
                 install: Optional[Callable[[E], None]] = None,
                 retire: Optional[Callable[[E], None]] = None,
                 deferred: bool = False) -> None:
        self.name = name
        self._close = close
        self._install = install
        self._retire = retire or close
        self._deferred = deferred
        self._lock = threading.Lock()      # the fields below; held only briefly
        self._swap = threading.Lock()      # a swap (with its install) against close()
        self._current: Optional[E] = None
        self._pending: Optional[E] = None
        self._open = False
        self._seq = 0                      # bumped by every request and by close()
        self._wanted: Optional[_Request[E]] = None
        self._thread: Optional[threading.Thread] = None

    # ================================================================= state
    @property
    def current(self) -> Optional[E]:
        """The engine in use (None while the slot is closed)."""
        return self._current

    @property
    def pending(self) -> Optional[E]:
        """Deferred mode: a loaded engine waiting for `swap()` (else None)."""
        return self._pending

    @property
    def loading(self) -> bool:
        """A reload is waiting or being built."""
        with self._lock:
            return self._thread is not None

    # ================================================================= owner's calls
    def set(self, engine: E) -> None:
        """Open the slot with `engine` (configure); an engine still held is closed."""
        with self._swap:
            with self._lock:
                old, self._current, self._open = self._current, engine, True
        if old is not None and old is not engine:
            self._close_quietly(old)

    def reload(self, build: Callable[[], E], on_loaded: Optional[Callable[[E], None]] = None,
               on_failed: Optional[Callable[[Exception], None]] = None) -> bool:
        """Build a new engine in the background and swap it in (see the class docstring).
        Returns False, doing nothing, while the slot is closed."""
        with self._lock:
            if not self._open:
                return False
            self._seq += 1
            self._wanted = _Request(self._seq, build, on_loaded, on_failed)
            if self._thread is None:
                self._thread = threading.Thread(target=self._load_loop,
                                                name=f'{self.name}-reload', daemon=True)
                self._thread.start()
        return True

    def swap(self) -> Optional[E]:
        """Deferred mode: put the pending engine in now and retire the old one. Returns the
        new engine, or None if none was pending."""
        with self._swap:
            with self._lock:
                new, self._pending = self._pending, None
                if new is None:
                    return None
                old, self._current = self._current, new
            if self._install is not None:
                self._install(new)
        if old is not None:
            self._retire_quietly(old)
        return new

    def close(self, wait_s: float = 0.0) -> None:
        """Shut the slot: close the current and the pending engine; a load still running is
        closed when it ends (waited for up to `wait_s`)."""
        with self._swap:
            with self._lock:
                self._open = False
                self._seq += 1
                self._wanted = None
                engines = [self._pending, self._current]
                self._pending = self._current = None
                thread = self._thread
        for engine in engines:
            if engine is not None:
                self._close_quietly(engine)
        del engines
        if wait_s > 0 and thread is not None and thread is not threading.current_thread():
            thread.join(wait_s)

    # ================================================================= loader thread
    def _load_loop(self) -> None:
        while True:
            with self._lock:
                request, self._wanted = self._wanted, None
                if request is None:
                    self._thread = None
                    return
            try:
                self._load(request)
            except Exception:  # an owner's install hook raised: report, keep serving
                _LOG.exception('%s: installing the new engine failed', self.name)
            del request

    def _load(self, request: _Request[E]) -> None:
        try:
            new = request.build()
        except Exception as exc:
            with self._lock:
                latest = self._open and request.seq == self._seq
            if latest and request.on_failed is not None:
                self._call(request.on_failed, exc)
            return
        drop: Optional[E] = None      # an engine nobody will use: closed
        old: Optional[E] = None       # the one swapped out: retired
        with self._swap:
            with self._lock:
                accepted = self._open and request.seq == self._seq
                if not accepted:
                    drop = new                    # superseded, or the slot was closed
                elif self._deferred:
                    drop, self._pending = self._pending, new
                else:
                    old, self._current = self._current, new
            if accepted and not self._deferred and self._install is not None:
                self._install(new)
        if drop is not None:
            self._close_quietly(drop)
            del drop
        if old is not None:
            self._retire_quietly(old)
            del old
        if accepted and request.on_loaded is not None:
            self._call(request.on_loaded, new)

    # ================================================================= helpers
    def _close_quietly(self, engine: E) -> None:
        try:
            self._close(engine)
        except Exception:  # one engine failing to close must not stop the slot
            _LOG.exception('%s: closing an engine failed', self.name)

    def _retire_quietly(self, engine: E) -> None:
        try:
            self._retire(engine)
        except Exception:
            _LOG.exception('%s: retiring the old engine failed', self.name)

    def _call(self, callback: Callable, arg: object) -> None:
        try:
            callback(arg)
        except Exception:  # an owner's callback must not kill the loader
            _LOG.exception('%s: reload callback failed', self.name)
