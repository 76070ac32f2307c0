"""Download public datasets from their official source, verified by SHA-256.

``seqrec data fetch movielens-100k --dir datasets`` calls :func:`fetch_dataset`, which

1. streams the archive to ``<dir>/<file>.part`` (resuming with an HTTP ``Range`` request
   when a ``.part`` is already there, so an interrupted download is not started over),
2. checks its SHA-256 against :data:`DATASETS` *before anything is unpacked*; on a
   mismatch the ``.part`` is deleted and a one-line :class:`SeqrecError` names the file
   and both hashes,
3. unpacks into a hidden temporary sibling folder and moves the data folder into place
   with one ``os.replace``: an interrupted run never leaves a half-unpacked dataset,
4. returns the folder holding the data files (``<dir>/ml-100k``).

A folder that a previous run unpacked and verified (it holds :data:`MARKER_NAME`, which
records the archive's SHA-256) is returned at once, without any request. An archive
already at ``<dir>/<file>`` (downloaded by hand) is used, and kept, if its SHA-256 matches.

Example (``base_url`` and ``sha256`` point the fetch at a mirror or a local test server)::

    >>> from seqrec.data.fetch import fetch_dataset
    >>> fetch_dataset("movielens-100k", "datasets")  # doctest: +SKIP
    PosixPath('datasets/ml-100k')
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from seqrec.infra.errors import SeqrecError

__all__ = ["DATASETS", "MARKER_NAME", "DatasetSource", "fetch_dataset", "get_source", "known_datasets"]

#: File written inside an unpacked dataset folder; records which verified archive it came from.
MARKER_NAME = ".seqrec-fetch.json"

_CHUNK = 1 << 16
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class DatasetSource:
    """One downloadable dataset archive.

    :param name: the name given to ``seqrec data fetch`` (``"movielens-100k"``).
    :param url: the official download address of the archive.
    :param filename: the archive's file name; with ``base_url`` the archive is fetched
        from ``f"{base_url}/{filename}"``.
    :param sha256: lower-case hex SHA-256 of the archive bytes.
    :param folder: the folder inside the archive that holds the data files; it is
        unpacked to ``<dir>/<folder>``.
    :param size: the archive's size in bytes, if known (used for the progress bar and to
        recognise a complete ``.part``; the SHA-256 is what decides).
    :param aliases: other accepted names (``"ml-100k"``).
    """

    name: str
    url: str
    filename: str
    sha256: str
    folder: str
    size: int | None = None
    aliases: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not _SHA256_RE.match(self.sha256):
            raise ValueError(f"DatasetSource {self.name!r}: sha256 must be 64 lower-case hex digits")
        if not self.url.endswith("/" + self.filename):
            raise ValueError(
                f"DatasetSource {self.name!r}: url {self.url!r} does not end in {self.filename!r}"
            )


_GROUPLENS = "https://files.grouplens.org/datasets/movielens"

# SHA-256 of the archives served by GroupLens. GroupLens itself publishes only MD5s
# (<file>.md5 next to each zip); these SHA-256 values are the ones recorded by
# TensorFlow Datasets (tensorflow_datasets/url_checksums/movielens.txt, with the same
# byte sizes) and independently by several other projects that pin these archives.
# They could not be recomputed here (no network). ml-latest-small is replaced in place
# by GroupLens from time to time; the value below is for the 2018-09-26 build.
#   ml-100k.zip          MD5 0e33842e24a9c977be4e0107933c0723 (GroupLens)
#   ml-1m.zip            MD5 c4d9eecfca2ab87c1945afe126590906 (GroupLens)
DATASETS: dict[str, DatasetSource] = {
    s.name: s
    for s in (
        DatasetSource(
            name="movielens-100k",
            url=f"{_GROUPLENS}/ml-100k.zip",
            filename="ml-100k.zip",
            sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            folder="ml-100k",
            size=4_924_029,
            aliases=("ml-100k",),
        ),
        DatasetSource(
            name="movielens-1m",
            url=f"{_GROUPLENS}/ml-1m.zip",
            filename="ml-1m.zip",
            sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            folder="ml-1m",
            size=5_917_549,
            aliases=("ml-1m",),
        ),
        DatasetSource(
            name="movielens-latest-small",
            url=f"{_GROUPLENS}/ml-latest-small.zip",
            filename="ml-latest-small.zip",
            sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
            folder="ml-latest-small",
            size=978_202,
            aliases=("ml-latest-small",),
        ),
    )
}


def known_datasets() -> list[str]:
    """The names :func:`fetch_dataset` accepts (aliases not included), sorted."""
    return sorted(DATASETS)


def get_source(name: str) -> DatasetSource:
    """The :class:`DatasetSource` registered under ``name`` or one of its aliases.

    :raises SeqrecError: for an unknown name; the message lists the known names.
    """
    key = name.strip().lower()
    for source in DATASETS.values():
        if key == source.name or key in source.aliases:
            return source
    raise SeqrecError(f"unknown dataset {name!r}; known datasets: {', '.join(known_datasets())}")


def fetch_dataset(
    name: str,
    dir: str | Path,
    *,
    base_url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download, verify and unpack a public dataset; return the folder holding its files.

    :param name: a name from :func:`known_datasets` (or an alias such as ``"ml-100k"``).
    :param dir: folder to download and unpack into; created if missing. The archive is
        unpacked to ``dir / source.folder``.
    :param base_url: fetch ``f"{base_url}/{filename}"`` instead of the official URL (a
        mirror, or a local server in tests). Default: the official source.
    :param sha256: expected SHA-256 of the archive, overriding the registered one (for a
        mirror serving another build, or test archives). Default: the registered value.
    :param progress: show a progress bar on stderr while downloading. Default ``True``.
    :param timeout: seconds to wait for the server to connect or send data. Default 60.
    :return: ``dir / source.folder``, e.g. ``Path("datasets/ml-100k")``.
    :raises SeqrecError: for an unknown name, a network error (naming the URL), a
        checksum mismatch (naming the file and both hashes), a damaged archive, or a
        target folder that exists but was not unpacked by a verified fetch.
    """
    source = get_source(name)
    expected = source.sha256 if sha256 is None else sha256.strip().lower()
    if not _SHA256_RE.match(expected):
        raise SeqrecError(f"sha256 must be 64 hex digits, got {sha256!r}")
    url = source.url if base_url is None else f"{base_url.rstrip('/')}/{source.filename}"

    root = Path(dir)
    target = root / source.folder
    if target.exists():
        _check_existing(target, expected)
        return target
    root.mkdir(parents=True, exist_ok=True)

    # An archive the user put there by hand is used if it verifies, and never deleted.
    archive = root / source.filename
    if not (archive.is_file() and _sha256_of(archive) == expected):
        # A complete .part verifies at once (an earlier run was interrupted while unpacking);
        # otherwise the download continues from where the .part ends.
        archive = root / (source.filename + ".part")
        if not (archive.is_file() and _sha256_of(archive) == expected):
            size = source.size if sha256 is None else None
            _download(url, archive, size=size, progress=progress, timeout=timeout)
            actual = _sha256_of(archive)
            if actual != expected:
                archive.unlink()
                raise SeqrecError(
                    f"{archive}: SHA-256 mismatch for {url}: expected {expected}, got {actual}; "
                    "the download was deleted, nothing was unpacked"
                )

    ours = archive.suffix == ".part"
    try:
        _unpack(archive, root, source.folder, marker={"name": source.name, "url": url, "sha256": expected})
    except SeqrecError:  # a damaged archive will not get better: drop ours (an interrupt keeps it)
        if ours:
            archive.unlink()
        raise
    if ours:
        archive.unlink()
    return target


# PLUMBING ---------------------------------------------------------------------------


def _check_existing(target: Path, expected: str) -> None:
    """Accept ``target`` only if a verified fetch of the expected archive unpacked it."""
    marker = target / MARKER_NAME
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        raise SeqrecError(
            f"{target} exists but was not unpacked by seqrec from a verified archive; "
            "delete it or choose another --dir"
        ) from None
    if recorded != expected:
        raise SeqrecError(
            f"{target} was unpacked from an archive with SHA-256 {recorded}, not the expected "
            f"{expected}; delete it to fetch again"
        )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(err: BaseException) -> str:
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    text = " ".join(str(reason).split()) or type(reason).__name__
    return text


def _download(url: str, part: Path, *, size: int | None, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``part``, appending to what is there via an HTTP Range request."""
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:  # not a prefix of the expected archive
        part.unlink()
        offset = 0
    if size is not None and offset == size:  # already complete; the checksum decides
        return

    from seqrec import __version__

    headers = {"User-Agent": f"seqrec/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    opener = urllib.request.build_opener()  # reads *_proxy / no_proxy now, not at import
    try:
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:  # the .part already holds the whole file
            return
        raise SeqrecError(f"could not download {url}: HTTP {err.code} {_one_line(err)}") from err
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise SeqrecError(f"could not download {url}: {_one_line(err)}") from err

    with resp:
        if resp.status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise SeqrecError(
                    f"could not resume {url}: asked for bytes from {offset}, server sent from {start}; "
                    "the partial download was deleted, rerun to start over"
                )
            mode = "ab"
        else:  # the server ignored the Range header: start over
            offset, mode = 0, "wb"
        length_header = resp.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else size
        received = 0

        from seqrec.infra.progress import progress as progress_bar

        with open(part, mode) as fh, progress_bar(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=not progress,
        ) as bar:
            try:
                while chunk := resp.read(_CHUNK):
                    fh.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise SeqrecError(
                    f"download of {url} interrupted after {offset + received} bytes ({_one_line(err)}); "
                    f"rerun to resume from {part}"
                ) from err
        if length is not None and received < length:
            raise SeqrecError(
                f"download of {url} interrupted after {offset + received} of {offset + length} bytes; "
                f"rerun to resume from {part}"
            )


def _content_range_start(header: str | None) -> int | None:
    match = re.match(r"^\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*$", header or "")
    return int(match.group(1)) if match else None


def _unpack(archive: Path, root: Path, folder: str, *, marker: dict[str, str]) -> None:
    """Unpack ``archive`` and move its ``folder`` to ``root / folder`` in one ``os.replace``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", suffix=".unpacking", dir=root))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    name = info.filename.replace("\\", "/")
                    unsafe = name.startswith("/") or re.match(r"^[A-Za-z]:", name) is not None
                    if unsafe or ".." in PurePosixPath(name).parts:
                        raise SeqrecError(f"{archive}: unsafe member path {info.filename!r}; not unpacked")
                zf.extractall(tmp)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
            raise SeqrecError(f"{archive}: not a readable zip archive ({_one_line(err)})") from err
        unpacked = tmp / folder
        if not unpacked.is_dir():
            raise SeqrecError(f"{archive}: no top-level folder {folder!r} in the archive; not unpacked")
        (unpacked / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        os.replace(unpacked, root / folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
