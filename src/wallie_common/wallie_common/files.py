"""Private files and directories (pure Python): what Wallie writes, only its user can read."""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700


def make_private_dirs(directory: str | os.PathLike) -> list[Path]:
    """Create `directory` and its missing parents as 0700 directories (whatever the umask).

    Existing directories are left as they are; returns the directories that were created.
    """
    missing = []
    path = Path(directory).expanduser()
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for created in reversed(missing):
        try:
            os.mkdir(created, DIR_MODE)
        except FileExistsError:
            pass
        os.chmod(created, DIR_MODE)
    return missing
