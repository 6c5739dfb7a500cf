"""Per-node health reporting on /diagnostics and rate-limited, counted warnings."""

from __future__ import annotations

import threading
import time
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR


class Diagnostics:
    """Holds a node's current health and counters; published periodically by the node."""

    def __init__(self, name: str, hardware_id: str = 'wallie') -> None:
        self._name = name
        self._hw = hardware_id
        self._lock = threading.Lock()
        self._level = OK
        self._message = 'starting'
        self._values: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._last_log: dict[str, float] = {}

    def set(self, level: int, message: str, **values: object) -> None:
        """Set the overall level and message, and update key/values."""
        with self._lock:
            self._level = level
            self._message = message
            for k, v in values.items():
                self._values[k] = str(v)

    def ok(self, message: str, **values: object) -> None:
        self.set(OK, message, **values)

    def warn(self, message: str, **values: object) -> None:
        self.set(WARN, message, **values)

    def error(self, message: str, **values: object) -> None:
        self.set(ERROR, message, **values)

    def value(self, key: str, value: object) -> None:
        """Update one key/value without changing the level."""
        with self._lock:
            self._values[key] = str(value)

    def count(self, key: str, n: int = 1) -> int:
        """Increment a counter shown in diagnostics; return the new count."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n
            return self._counts[key]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def throttled(self, key: str, period_s: float, log: Callable[[str], None], msg: str) -> None:
        """Count an event and log it at most once per period (with the running count)."""
        n = self.count(key)
        now = time.monotonic()
        with self._lock:
            last = self._last_log.get(key, -1e9)
            due = now - last >= period_s
            if due:
                self._last_log[key] = now
        if due:
            log(f'{msg} [{key}: {n} so far]')

    @property
    def level(self) -> int:
        with self._lock:
            return self._level

    @property
    def message(self) -> str:
        with self._lock:
            return self._message

    def to_msg(self, stamp) -> DiagnosticArray:
        """Build the DiagnosticArray for /diagnostics."""
        with self._lock:
            status = DiagnosticStatus(level=self._level, name=self._name,
                                      message=self._message, hardware_id=self._hw)
            status.values = [KeyValue(key=k, value=v) for k, v in self._values.items()]
            status.values += [KeyValue(key=f'count.{k}', value=str(v))
                              for k, v in self._counts.items()]
        arr = DiagnosticArray()
        arr.header.stamp = stamp
        arr.status = [status]
        return arr
