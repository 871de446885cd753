"""Files that hold a secret or a token (a keyring, a host's credential, the dev fleet's record): written whole
or not at all, mode 0600 from the first byte, and on disk before they are relied on."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)  # an existing tmp file keeps its mode through O_CREAT
    os.replace(tmp, path)
