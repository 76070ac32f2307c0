"""Read + preprocess + split a log once, then reuse it from a cache.

Generic logs stream from the file into columns (:mod:`seqrec.data.scan`), are filtered and
ordered with numpy (:mod:`seqrec.data.preprocess`) and land in the cache as memory-mapped
Arrow files (:meth:`SequenceData.save`); what this returns is read from those files, so a
prepared dataset costs its reader only the pages it touches.

The cache key is a SHA-256 over the source files' bytes, the reader options and the
preprocessing/split options, so a prepared dataset is reused exactly when neither the
data nor the options changed. Entries are written into a temporary sibling folder and
renamed into place, under a file lock, so concurrent or interrupted runs never leave a
half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import platformdirs
from filelock import FileLock

from seqrec.infra.errors import SeqrecError
from seqrec.data.preprocess import PrepConfig, preprocess
from seqrec.data.readers import ColumnMap, detect_format, log_parts, read_log
from seqrec.data.sequences import SequenceData, SplitConfig

CACHE_FORMAT = 2  # 2: Arrow IPC entries, streamed generic logs
_SIBLINGS = {"ml-100k": ("u.data", "u.item", "u.user"), "ml-dat": ("ratings.dat", "movies.dat"), "ml-csv": ("ratings.csv", "movies.csv")}


def cache_root() -> Path:
    """Where seqrec caches prepared data and default bundles (``$SEQREC_CACHE`` overrides)."""
    return Path(os.environ.get("SEQREC_CACHE") or platformdirs.user_cache_dir("seqrec"))


def source_files(path: Path, fmt: str) -> list[Path]:
    """The files a reader of ``fmt`` reads for ``path`` (what the cache key hashes)."""
    if path.is_file():
        if fmt in _SIBLINGS:
            return [p for p in (path.parent / n for n in _SIBLINGS[fmt]) if p.exists()]
        return [path]
    if fmt in ("csv", "parquet"):
        return log_parts(path, fmt)
    return sorted(p for p in path.iterdir() if p.is_file())


def content_hash(files: list[Path]) -> str:
    """SHA-256 over the names and bytes of ``files``."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()


def prepare_dataset(
    path: str | Path,
    *,
    format: str | None = None,
    columns: str | ColumnMap | None = None,
    sep: str | None = None,
    prep: PrepConfig = PrepConfig(),
    split: SplitConfig = SplitConfig(),
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> SequenceData:
    """Read, preprocess and split ``path``, reusing the cached result when nothing changed.

    ``meta`` of the result holds the preprocessing report, the content hash, the options
    and ``cache_hit`` (whether this call reused an entry). With the cache the result is always
    the memory-mapped entry (a fresh one too, once written); ``use_cache=False`` returns the
    arrays in memory.
    """
    path = Path(path)
    fmt = format or (("parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv") if columns and path.is_file() else detect_format(path))
    options = {"format": fmt, "columns": str(columns.used() if isinstance(columns, ColumnMap) else columns),
               "sep": sep, "prep": asdict(prep), "split": asdict(split), "cache_format": CACHE_FORMAT}  # fmt: skip
    source_hash = content_hash(source_files(path, fmt))
    key = hashlib.sha256((source_hash + json.dumps(options, sort_keys=True)).encode()).hexdigest()[:20]
    entry = (Path(cache_dir) if cache_dir is not None else cache_root() / "datasets") / key
    if use_cache and (entry / "sequences.json").exists():
        try:
            seq = SequenceData.load(entry)
            seq.meta["cache_hit"] = True
            return seq
        except SeqrecError as err:  # a damaged entry is rebuilt, not trusted
            warnings.warn(f"rebuilding damaged cache entry: {err}", stacklevel=2)
            with FileLock(str(entry) + ".lock"):
                shutil.rmtree(entry, ignore_errors=True)
    t0 = time.perf_counter()
    seq = _prepare(path, fmt, columns, sep, prep, split)
    seq.meta.update(source_hash=source_hash, options=options, key=key, format=fmt, prepare_seconds=round(time.perf_counter() - t0, 3))
    if use_cache:
        _store(seq, entry)
        del seq  # the entry's memory-mapped arrays replace the ones in memory
        seq = SequenceData.load(entry)
    seq.meta["cache_hit"] = False
    return seq


def _prepare(path: Path, fmt: str, columns: str | ColumnMap | None, sep: str | None, prep: PrepConfig,
             split: SplitConfig) -> SequenceData:
    """Read + preprocess + split; each stage's input is released as soon as the next has its output."""
    table, report = preprocess(read_log(path, fmt, columns, sep), prep)
    seq = SequenceData.from_table(table, split)
    seq.meta["report"] = report.to_dict()
    return seq


def _store(seq: SequenceData, entry: Path) -> None:
    """Write ``seq`` to ``entry`` atomically (temp folder + rename, under a lock)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        if (entry / "sequences.json").exists():
            return
        tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".", dir=entry.parent))
        try:
            seq.save(tmp)
            if entry.exists():  # a damaged earlier entry
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
