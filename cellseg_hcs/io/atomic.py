"""Files that appear whole or not at all: write under a temporary name, then rename.

Every output of the package is written through here: bytes (:func:`write_atomic_bytes`),
JSON (:func:`write_atomic_json`), or a writer that needs a path of its own, such as a TIFF,
parquet or zarr writer (:func:`atomic_path`). A rename within one folder is atomic on POSIX
file systems, local or shared. Kept free of heavy imports: the torch-free start-up path uses
it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE_MODE = 0o644  # outputs are shared: readable by the group and others, as cp/tar make them


def temporary_name(path: Path) -> Path:
    """A hidden name beside ``path``, unique to this writer (process and thread alike)."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: str | Path, mode: int | None = FILE_MODE) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed into place when the block ends.

    The folder is created if needed. On an error nothing is left behind and an older
    ``path`` is kept. A file gets ``mode`` (None leaves it as created); a folder (a zarr
    group) replaces an older folder of the same name.

    Examples
    --------
    >>> with atomic_path(folder / "labels.tif") as tmp:  # doctest: +SKIP
    ...     tifffile.imwrite(tmp, labels)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if tmp.is_dir():
            _replace_folder(tmp, path)
        else:
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _replace_folder(tmp: Path, path: Path) -> None:
    if path.exists():
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(path)


def write_atomic_bytes(path: str | Path, data: bytes, mode: int = FILE_MODE) -> Path:
    """Write a file under a temporary name in its folder, then rename it into place."""
    path = Path(path)
    with atomic_path(path, mode) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return path


def jsonable(value: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars, paths, sets and tuples."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_atomic_json(path: str | Path, data: Any, mode: int = FILE_MODE) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, default=jsonable)
    return write_atomic_bytes(path, (text + "\n").encode(), mode)


def output_folder(out: str | Path) -> Path:
    """``out``, created if needed and checked writable; one sentence when it cannot be
    (a file of that name, a read-only file system, no permission)."""
    from ..errors import InputError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the outputs.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror}.") from None
    check_writable(out)
    return out


def check_can_write(out: str | Path) -> None:
    """One sentence when ``out`` (a folder, existing or to be made) could not be written,
    found without creating it: its nearest existing folder is probed instead."""
    from ..errors import InputError

    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the outputs.")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot create the output folder {out}: {existing} is a file.")
    try:
        check_writable(existing)
    except InputError as exc:
        if existing == out:
            raise
        reason = str(exc).rpartition(": ")[2]
        raise InputError(f"cannot create the output folder {out}: {reason}") from None


def check_writable(folder: str | Path) -> None:
    """One sentence when files cannot be written in ``folder`` (read-only file system, no
    permission), found by writing and removing a hidden probe file."""
    import tempfile

    from ..errors import InputError

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cellseg-hcs-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write in the folder {folder}: {exc.strerror}.") from None
