"""Replace a file atomically, safe with several writers at once.

Each writer gets a temporary file of its own beside the target (a fixed
``NAME.tmp`` would let two writers, say a running control plane and a
``controlplane user remove``, rename each other's file away), written,
fsync'd, given its mode and renamed over the target: a reader sees the old
file or the new one, never a part.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``, with permissions ``mode`` from the start."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(name).replace(path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
