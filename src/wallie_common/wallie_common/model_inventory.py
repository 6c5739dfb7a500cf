"""What the model store holds: where it is, the quick size check, the full sha256 check.

Pure Python (no rclpy); ``wallie_common.model_store`` is the public interface. The store is
``<store>/<model id>/`` where ``<store>`` is the ``store`` argument, else
``$WALLIE_MODEL_DIR``, else ``~/.wallie_voice_bot/models``; the wheel cache of ``fetch`` is
``$WALLIE_CACHE_DIR`` or ``~/.cache/wallie/dl``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from wallie_common.model_manifest import Manifest, ModelSpec, PathLike, load_manifest

ENV_STORE_DIR = 'WALLIE_MODEL_DIR'
ENV_CACHE_DIR = 'WALLIE_CACHE_DIR'
DEFAULT_STORE_DIR = '~/.wallie_voice_bot/models'
DEFAULT_CACHE_DIR = '~/.cache/wallie/dl'
CHUNK_BYTES = 1 << 20


# --------------------------------------------------------------------------- locations


def store_dir(store: PathLike | None = None) -> Path:
    """The store root: ``store`` if given, else ``$WALLIE_MODEL_DIR``, else the default."""
    if store not in (None, ''):
        return Path(os.fspath(store)).expanduser()
    env = os.environ.get(ENV_STORE_DIR)
    return Path(env or DEFAULT_STORE_DIR).expanduser()


def cache_dir(cache: PathLike | None = None) -> Path:
    """Wheel cache: ``cache`` if given, else ``$WALLIE_CACHE_DIR``, else the default."""
    if cache not in (None, ''):
        return Path(os.fspath(cache)).expanduser()
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env or DEFAULT_CACHE_DIR).expanduser()


def fetch_command(
    model_id: str | None = None, store: PathLike | None = None, force: bool = False
) -> str:
    """The exact shell command that installs ``model_id`` (``store``: an explicit store)."""
    words = ['wallie', 'models', 'fetch']
    if force:
        words.append('--force')
    if store not in (None, ''):
        words += ['--store', _shell_quote(str(store_dir(store)))]
    if model_id:
        words.append(model_id)
    return ' '.join(words)


def _shell_quote(text: str) -> str:
    if re.match(r'^[A-Za-z0-9_./~+-]+$', text):
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


# --------------------------------------------------------------------------- status / verify


@dataclasses.dataclass(frozen=True)
class Problem:
    """One bad file found by :func:`verify` (or by the quick size check)."""

    model_id: str
    file: str | None  # None when the whole model is missing
    path: Path
    kind: str  # 'missing' | 'truncated' | 'oversized' | 'corrupted' | 'unreadable'
    detail: str
    fix: str

    @property
    def message(self) -> str:
        return f'{self.model_id}: {self.detail} [{self.path}]. Fix: {self.fix}'

    def __str__(self) -> str:
        return self.message


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    """A model's state in the store by the size check: present, missing or incomplete, with the
    problems found."""

    spec: ModelSpec
    path: Path
    state: str  # 'present' | 'missing' | 'incomplete' (size check only)
    present_bytes: int
    problems: tuple[Problem, ...]


def size_problems(
    spec: ModelSpec, directory: Path, store: PathLike | None = None
) -> list[Problem]:
    """The files of `spec` in `directory` that are missing or have the wrong size."""
    fix = fetch_command(spec.id, store)
    problems = []
    for file in spec.files:
        path = directory / file.name
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(Problem(spec.id, file.name, path, 'missing',
                                    f'{file.name} is missing', fix))
            continue
        if size < file.size:
            problems.append(Problem(
                spec.id, file.name, path, 'truncated',
                f'{file.name} is truncated: {size} of {file.size} bytes', fix))
        elif size > file.size:
            problems.append(Problem(
                spec.id, file.name, path, 'oversized',
                f'{file.name} has the wrong size: {size} bytes, expected {file.size}', fix))
    return problems


def list_models(
    store: PathLike | None = None, *, manifest: Manifest | None = None
) -> list[ModelStatus]:
    """Every model of the manifest with its state in the store (size check, no hashing)."""
    manifest = manifest or load_manifest()
    root = store_dir(store)
    out = []
    for spec in manifest.models:
        directory = root / spec.id
        problems = size_problems(spec, directory, store)
        present = 0
        for file in spec.files:
            try:
                present += (directory / file.name).stat().st_size
            except OSError:
                pass
        if not problems:
            state = 'present'
        elif all(p.kind == 'missing' for p in problems) and len(problems) == len(spec.files):
            state = 'missing'
        else:
            state = 'incomplete'
        out.append(ModelStatus(spec, directory, state, present, tuple(problems)))
    return out


def verify(
    ids: Iterable[str] | None = None,
    store: PathLike | None = None,
    *,
    manifest: Manifest | None = None,
    progress: bool = False,
) -> list[Problem]:
    """Full check (size and sha256) of the given models; returns the problems found.

    ``ids=None`` checks the default set plus every optional model that has a directory in
    the store. An empty list means everything checked is intact.
    """
    manifest = manifest or load_manifest()
    root = store_dir(store)
    if ids is None:
        ids = [m.id for m in manifest.models if m.default or (root / m.id).is_dir()]
    specs = [manifest.get(i) for i in id_list(ids)]
    problems: list[Problem] = []
    with progress_bar(progress) as bar:
        for spec in specs:
            directory = root / spec.id
            fix = fetch_command(spec.id, store)
            if not directory.is_dir():
                problems.append(Problem(
                    spec.id, None, directory, 'missing',
                    f'model is not in the model store ({_files(len(spec.files))} missing)',
                    fix))
                continue
            wrong_size = {p.file: p for p in size_problems(spec, directory, store)}
            for file in spec.files:
                if file.name in wrong_size:
                    problems.append(wrong_size[file.name])
                    continue
                path = directory / file.name
                try:
                    digest = sha256_file(path, bar, f'verify {spec.id}/{file.name}')
                except OSError as exc:
                    problems.append(Problem(spec.id, file.name, path, 'unreadable',
                                            f'{file.name} cannot be read: {exc}', fix))
                    continue
                if digest != file.sha256:
                    problems.append(Problem(
                        spec.id, file.name, path, 'corrupted',
                        f'{file.name} is corrupted: sha256 {digest[:16]}... does not match '
                        f'the manifest ({file.sha256[:16]}...)',
                        fetch_command(spec.id, store, force=True)))
    return problems


def id_list(ids: Iterable[str]) -> list[str]:
    """`ids` as a list."""
    # A lone id is accepted too (a str is an Iterable[str] of characters otherwise).
    return [ids] if isinstance(ids, str) else list(ids)


def sha256_file(path: Path, bar: Bar, label: str) -> str:
    """The sha256 of a file, read in chunks (progress on `bar`)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        task = bar.start(label, os.fstat(stream.fileno()).st_size)
        while True:
            chunk = stream.read(CHUNK_BYTES)
            if not chunk:
                break
            digest.update(chunk)
            bar.advance(task, len(chunk))
        bar.done(task)
    return digest.hexdigest()


def _files(count: int) -> str:
    return f'{count} file' if count == 1 else f'{count} files'


def human_size(size: int) -> str:
    """A byte count for people: 12 B, 1.5 KB, 3.2 MB, 1.1 GB (powers of 1000)."""
    value = float(size)
    for unit in ('B', 'KB', 'MB', 'GB'):
        if value < 1000 or unit == 'GB':
            return f'{value:.0f} {unit}' if unit == 'B' else f'{value:.1f} {unit}'
        value /= 1000
    return f'{size} B'


# --------------------------------------------------------------------------- progress


class Bar(Protocol):
    """A progress display for byte counts (a rich bar, or nothing)."""

    def start(self, label: str, total: int) -> Any: ...

    def advance(self, task: Any, amount: int) -> None: ...

    def done(self, task: Any) -> None: ...


class _NoBar:
    def start(self, label: str, total: int) -> Any:
        return None

    def advance(self, task: Any, amount: int) -> None:
        pass

    def done(self, task: Any) -> None:
        pass


class _RichBar:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn('{task.description}'),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )

        self.totals: dict[Any, int] = {}

    def start(self, label: str, total: int) -> Any:
        task = self.progress.add_task(label, total=total)
        self.totals[task] = total
        return task

    def advance(self, task: Any, amount: int) -> None:
        self.progress.update(task, advance=amount)

    def done(self, task: Any) -> None:
        self.progress.update(task, completed=self.totals.get(task, 0))


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Bar]:
    """A rich progress bar on stderr while the block runs (`enabled`), else a silent one."""
    if not enabled:
        yield _NoBar()
        return
    bar = _RichBar()
    with bar.progress:
        yield bar
