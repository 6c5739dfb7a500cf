"""The committed bench fixtures (package data of wallie_cli), which of them a bench replays,
and the fact check of a reply."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from wallie_cli.wavs import GraphError

DEFAULT_SETS = ('questions', 'followup')      # what `wallie bench` replays

# ---------------------------------------------------------------------------- text checks
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """The lowercase words of `text` (letters, digits and apostrophes)."""
    return _WORD.findall(text.lower())


def contains_fact(text: str, facts: Sequence[str]) -> bool:
    """True if any expected fact (a word or phrase) occurs as whole words in `text`."""
    w = ' ' + ' '.join(words(text)) + ' '
    return any(' ' + ' '.join(words(f)) + ' ' in w for f in facts if words(f))


def default_fixtures_dir() -> Path:
    """The committed bench fixtures: package data of wallie_cli (no source tree needed)."""
    return Path(str(resources.files('wallie_cli') / 'fixtures'))


def load_manifest(fixtures_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The fixture entries of ``<dir>/manifest.json`` with absolute bag paths."""
    d = Path(fixtures_dir)
    try:
        data = json.loads((d / 'manifest.json').read_text())
    except (OSError, ValueError) as exc:
        raise GraphError(f'{d}/manifest.json: {exc}') from None
    out = []
    for f in data.get('fixtures', []):
        f = dict(f)
        f['bag_path'] = str(d / f['bag'])
        out.append(f)
    return out


def select_fixtures(fixtures_dir: str | os.PathLike, sets: Sequence[str] = DEFAULT_SETS,
                    only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Fixtures that should be answered (speech, a turn expected, no wake word needed).

    Follow-up groups stay in their recorded order (turn 1 before turn 2).
    """
    out = []
    for f in load_manifest(fixtures_dir):
        if only and f['name'] not in only:
            continue
        if not only and f.get('set') not in sets:
            continue
        if not f.get('speech') or not f.get('expect_turn') or f.get('wake_word'):
            continue
        out.append(f)
    return out


def starts_conversation(f: dict[str, Any]) -> bool:
    """True for a fixture that opens a conversation (not a later turn of a follow-up)."""
    return not f.get('group') or int(f.get('turn') or 1) <= 1


def temp_home() -> Path:
    """A private WALLIE_HOME for tools that must not touch the user's logs."""
    return Path(tempfile.mkdtemp(prefix='wallie-home-'))


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a directory tree, ignoring errors."""
    shutil.rmtree(path, ignore_errors=True)
