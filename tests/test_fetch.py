"""seqrec.data.fetch against a local HTTP server serving a tiny fake archive (no network)."""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from seqrec.data import fetch as fetch_mod
from seqrec.infra.errors import SeqrecError
from seqrec.data.fetch import DATASETS, MARKER_NAME, fetch_dataset, get_source, known_datasets

NAME = "movielens-100k"
FILENAME = "ml-100k.zip"


def make_zip(folder: str = "ml-100k") -> bytes:
    """A tiny archive with the MovieLens 100K layout and made-up content."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # stored: the bytes stay large enough to split
        zf.writestr(f"{folder}/", "")
        rows = (f"{u}\t{i}\t3\t{800000000 + 10 * u + i}\n" for u in range(1, 21) for i in range(1, 41))
        zf.writestr(f"{folder}/u.data", "".join(rows))
        zf.writestr(f"{folder}/u.item", "1|Fake Film (1999)|01-Jan-1999||http://example.invalid|0\n")
        zf.writestr(f"{folder}/README", "fake archive for tests\n")
    return buf.getvalue()


ZIP = make_zip()
ZIP_SHA = hashlib.sha256(ZIP).hexdigest()


class FileServer:
    """Serves ``files`` (name -> bytes) on 127.0.0.1; records every request; honours ``Range: bytes=N-``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.honour_range = True
        self.truncate_at: int | None = None  # send only this many body bytes, then drop the connection
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and server.honour_range:
                    start = int(m.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if server.truncate_at is not None:
                    chunk = chunk[: server.truncate_at]
                self.wfile.write(chunk)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    with FileServer() as srv:
        srv.files[FILENAME] = ZIP
        yield srv


def fetch(server: FileServer, dest: Path, **kw):
    kw.setdefault("sha256", ZIP_SHA)
    return fetch_dataset(NAME, dest, base_url=server.url, progress=False, timeout=5, **kw)


def test_success_returns_unpacked_folder(server, tmp_path):
    out = fetch(server, tmp_path / "ds")
    assert out == tmp_path / "ds" / "ml-100k"
    assert (out / "u.data").read_text().startswith("1\t1\t3\t")
    assert (out / "u.item").is_file() and (out / MARKER_NAME).is_file()
    # no zip, .part or temporary folder left behind
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["ml-100k"]
    assert server.requests == [("/ml-100k.zip", None)]


def test_progress_bar_and_alias(server, tmp_path, capsys):
    out = fetch_dataset(
        "ml-100k", tmp_path, base_url=server.url + "/", sha256=ZIP_SHA.upper(), progress=True, timeout=5
    )
    assert (out / "u.data").is_file()
    assert "ml-100k.zip" in capsys.readouterr().err


def test_checksum_mismatch_unpacks_nothing(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(SeqrecError) as exc:
        fetch(server, tmp_path, sha256=wrong)
    msg = str(exc.value)
    assert "\n" not in msg and "ml-100k.zip.part" in msg and wrong in msg and ZIP_SHA in msg
    assert list(tmp_path.iterdir()) == []  # no .part, no folder, no temp folder


def test_resume_from_partial_download(server, tmp_path):
    half = len(ZIP) // 2
    (tmp_path / "ml-100k.zip.part").write_bytes(ZIP[:half])
    out = fetch(server, tmp_path)
    assert server.requests == [("/ml-100k.zip", f"bytes={half}-")]
    assert (out / "u.data").is_file()
    assert not (tmp_path / "ml-100k.zip.part").exists()


def test_resume_when_server_ignores_range(server, tmp_path):
    server.honour_range = False
    (tmp_path / "ml-100k.zip.part").write_bytes(b"garbage that must be overwritten")
    out = fetch(server, tmp_path)
    assert (out / "u.data").is_file()


def test_complete_part_verifies_without_request(server, tmp_path):
    (tmp_path / "ml-100k.zip.part").write_bytes(ZIP)
    out = fetch(server, tmp_path)
    assert server.requests == [] and (out / "u.data").is_file()


def test_corrupt_full_length_part_gets_416_then_is_dropped(server, tmp_path):
    (tmp_path / "ml-100k.zip.part").write_bytes(b"x" * len(ZIP))
    with pytest.raises(SeqrecError, match="SHA-256 mismatch"):
        fetch(server, tmp_path)
    assert server.requests == [("/ml-100k.zip", f"bytes={len(ZIP)}-")]
    assert list(tmp_path.iterdir()) == []
    assert (fetch(server, tmp_path) / "u.data").is_file()  # the rerun starts over


def test_interrupted_download_keeps_part_and_resumes(server, tmp_path):
    server.truncate_at = 1000
    with pytest.raises(SeqrecError, match=r"interrupted after 1000 .*rerun to resume"):
        fetch(server, tmp_path)
    assert (tmp_path / "ml-100k.zip.part").stat().st_size == 1000
    assert not (tmp_path / "ml-100k").exists()
    server.truncate_at = None
    out = fetch(server, tmp_path)
    assert server.requests[-1] == ("/ml-100k.zip", "bytes=1000-")
    assert (out / "u.data").is_file()


def test_already_present_makes_no_request(server, tmp_path):
    first = fetch(server, tmp_path)
    n = len(server.requests)
    assert fetch(server, tmp_path) == first
    assert len(server.requests) == n == 1


def test_existing_unverified_folder_is_refused(server, tmp_path):
    (tmp_path / "ml-100k").mkdir()
    with pytest.raises(SeqrecError, match="not unpacked by seqrec"):
        fetch(server, tmp_path)
    fetch(server, tmp_path / "other")
    with pytest.raises(SeqrecError, match="delete it to fetch again"):
        fetch(server, tmp_path / "other", sha256="1" * 64)
    assert server.requests == [("/ml-100k.zip", None)]


def test_unknown_name_lists_known_names(tmp_path):
    with pytest.raises(SeqrecError) as exc:
        fetch_dataset("movielens-7b", tmp_path, progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and "movielens-7b" in msg
    assert all(name in msg for name in known_datasets())
    assert list(tmp_path.iterdir()) == []


def test_bad_sha256_override(tmp_path):
    with pytest.raises(SeqrecError, match="64 hex digits"):
        fetch_dataset(NAME, tmp_path, sha256="abc", progress=False)


def test_http_error_names_url(server, tmp_path):
    del server.files[FILENAME]
    with pytest.raises(SeqrecError) as exc:
        fetch(server, tmp_path)
    assert f"{server.url}/ml-100k.zip" in str(exc.value) and "404" in str(exc.value)
    assert not (tmp_path / "ml-100k").exists()


def test_connection_refused_names_url(tmp_path):
    srv = FileServer()  # bound but never served, then closed: nothing listens on its port
    url = srv.url
    srv.httpd.server_close()
    with pytest.raises(SeqrecError) as exc:
        fetch_dataset(NAME, tmp_path, base_url=url, progress=False, timeout=2)
    assert f"{url}/ml-100k.zip" in str(exc.value) and "\n" not in str(exc.value)


def test_damaged_or_misshapen_archive_unpacks_nothing(server, tmp_path):
    cases = ((b"not a zip at all" * 10, "not a readable zip"), (make_zip("wrong-folder"), "top-level folder"))
    for body, pattern in cases:
        server.files[FILENAME] = body
        with pytest.raises(SeqrecError, match=pattern):
            fetch(server, tmp_path, sha256=hashlib.sha256(body).hexdigest())
        assert list(tmp_path.iterdir()) == []


def test_interrupted_unpack_leaves_no_half_dataset(server, tmp_path, monkeypatch):
    real = zipfile.ZipFile.extractall

    def crash(self, path=None, members=None, pwd=None):
        self.extract(self.namelist()[1], path)  # one file written, then the run dies
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "extractall", crash)
    with pytest.raises(KeyboardInterrupt):
        fetch(server, tmp_path)
    # the complete download is kept, no folder appears
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k.zip.part"]
    monkeypatch.setattr(zipfile.ZipFile, "extractall", real)
    out = fetch(server, tmp_path)
    assert len(server.requests) == 1  # the complete .part was re-verified, not downloaded again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k"]


def test_hand_downloaded_archive_is_used_and_kept(server, tmp_path):
    (tmp_path / "ml-100k.zip").write_bytes(ZIP)
    out = fetch(server, tmp_path)
    assert server.requests == [] and (out / "u.data").is_file()
    assert (tmp_path / "ml-100k.zip").read_bytes() == ZIP


def test_mismatching_hand_placed_archive_is_left_alone(server, tmp_path):
    (tmp_path / "ml-100k.zip").write_bytes(b"someone else's file")
    out = fetch(server, tmp_path)
    assert server.requests == [("/ml-100k.zip", None)] and (out / "u.data").is_file()
    assert (tmp_path / "ml-100k.zip").read_bytes() == b"someone else's file"


def test_unsafe_member_is_refused(server, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t3\t0\n")
        zf.writestr("ml-100k/../../evil.txt", "x")
    body = buf.getvalue()
    server.files[FILENAME] = body
    with pytest.raises(SeqrecError, match="unsafe member"):
        fetch(server, tmp_path / "d", sha256=hashlib.sha256(body).hexdigest())
    assert list((tmp_path / "d").iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_registry_points_at_grouplens():
    assert set(known_datasets()) == {"movielens-100k", "movielens-1m", "movielens-latest-small"}
    for source in DATASETS.values():
        assert source.url == f"https://files.grouplens.org/datasets/movielens/{source.filename}"
        assert source.filename == f"{source.folder}.zip" and re.fullmatch(r"[0-9a-f]{64}", source.sha256)
        assert get_source(source.folder) is source
    with pytest.raises(ValueError):
        fetch_mod.DatasetSource("x", "https://h/x.zip", "x.zip", "nothex", "x")
