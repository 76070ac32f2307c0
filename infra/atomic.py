"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The content goes to a temporary file in the destination folder (same file system), is
flushed to disk, and then replaces the destination with one ``os.replace``. If anything
fails before that, the temporary file is removed and the destination is untouched. Every
result file and checkpoint of seqrec is written this way.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "write_json_atomic", "json_default"]


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the ``with`` block ends without error.

    :param path: destination file; missing parent folders are created.
    :param mode: ``"w"`` (text) or ``"wb"`` (bytes).
    :yields: the open temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_default(x: Any) -> Any:
    """JSON for numpy scalars and arrays (ints stay ints, bools bools), other numbers with
    ``__float__`` (a 0-d tensor) as floats; anything else as its ``str``."""
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if hasattr(x, "__float__"):  # np.floating, 0-d torch tensors
        return float(x)
    return str(x)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=2, default=json_default)
        fh.write("\n")
    return Path(path)
