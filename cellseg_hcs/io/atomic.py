"""Files that appear whole or not at all: write under a temporary name, then rename.

Kept free of heavy imports: the torch-free start-up path (ONNX export cache) uses it too.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this writer (process and thread alike)."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def write_atomic_bytes(path: Path, data: bytes) -> Path:
    """Write a file under a temporary name in its folder, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
