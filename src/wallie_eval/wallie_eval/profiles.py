"""Merged node parameters of a bring-up profile, for the engine mode.

Only the profile's files count (defaults.yaml < <profile>.yaml < --set overrides): the user's
config.toml and WALLIE_* variables are ignored, so that an evaluation measures the profile.
The bring-up's configuration module is imported lazily (it is not a dependency of the
engines); ``wallie eval`` passes its own resolver instead.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any, Sequence


def _config_module() -> Any:
    for name in ('wallie_bringup.config',):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise RuntimeError('the Wallie bring-up package (parameter profiles) is not installed')


def profile_params(profile: str, overrides: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """The asr, llm and tts node parameters of `profile` with the `--set` overrides (user config
    ignored)."""
    wconfig = _config_module()
    cli: dict[str, dict[str, Any]] = {}
    for item in overrides:
        node, param, value = wconfig.parse_set(item)
        cli.setdefault(node, {})[param] = value
    with tempfile.TemporaryDirectory() as tmp:
        run = wconfig.RunConfig(profile=profile, cli_params=cli, environ={},
                                config_file=str(Path(tmp) / 'none.toml'), create_config=False)
        params = wconfig.resolve(run).params
    return {node: wconfig.for_node(params, node) for node in ('asr', 'llm', 'tts')}
