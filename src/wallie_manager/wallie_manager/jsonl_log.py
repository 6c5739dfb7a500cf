"""The JSONL event log (``~/.wallie_voice_bot/logs/wallie.jsonl``): one JSON object a line.

Writes happen on a worker thread behind a bounded queue, so a slow disk never blocks a ROS
callback; when the queue is full records are dropped and counted. Files rotate by size
(``logging.handlers.RotatingFileHandler``) and are created 0600 in a 0700 directory.
Every record has ``ts`` (UTC, ISO 8601) and ``stage``, so ``jq 'select(.stage=="asr")'`` works.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import queue
import threading
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from wallie_manager.privacy import FILE_MODE, ensure_private_dir, open_private


class PrivateRotatingFileHandler(RotatingFileHandler):
    """A RotatingFileHandler whose files are private to the user (0600)."""

    def _open(self):
        return open_private(self.baseFilename, append=True,
                            encoding=self.encoding or 'utf-8')

    def doRollover(self) -> None:
        super().doRollover()
        for n in range(1, self.backupCount + 1):
            path = f'{self.baseFilename}.{n}'
            if os.path.exists(path):
                os.chmod(path, FILE_MODE)


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: NaN/inf -> null, bytes -> length, unknown -> str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f'<{len(value)} bytes>'
    return str(value)


def encode(record: dict) -> str:
    """One JSONL line (without newline) for a record; adds `ts` if missing."""
    data = {'ts': _dt.datetime.now(_dt.timezone.utc).isoformat(timespec='milliseconds')}
    data.update(record)
    return json.dumps(_clean(data), ensure_ascii=True, allow_nan=False,
                      separators=(',', ':'))


class JsonlLog:
    """Asynchronous, size-bounded, private JSONL writer."""

    def __init__(self, path: str | os.PathLike, max_bytes: int, backup_count: int,
                 queue_size: int = 10000) -> None:
        self.path = Path(path).expanduser()
        ensure_private_dir(self.path.parent)
        self._handler = PrivateRotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backup_count, encoding='utf-8')
        self._handler.setFormatter(logging.Formatter('%(message)s'))
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.written = 0
        self.errors = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name='wallie-jsonl', daemon=True)
        self._thread.start()

    def write(self, record: dict) -> bool:
        """Queue a record (never blocks); False if it was dropped."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait(encode(record))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _run(self) -> None:
        while True:
            line = self._queue.get()
            if line is None:
                return
            try:
                rec = logging.makeLogRecord({'msg': line, 'levelno': logging.INFO})
                if self._handler.shouldRollover(rec):
                    self._handler.doRollover()
                stream = self._handler.stream
                if stream is None:
                    stream = self._handler.stream = self._handler._open()
                stream.write(line + '\n')
                stream.flush()
                self.written += 1
            except Exception:
                self.errors += 1

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued, then close the file."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._handler.close()
