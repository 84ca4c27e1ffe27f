"""Tests for npcf.data.download against a local HTTP server (never the real internet)."""
from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import shutil
import socket
import stat
import sys
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from npcf.cli.output import progress_bar
from npcf.data import download
from npcf.data.download import DATASETS, DatasetInfo, cache_dir, fetch, list_datasets
from npcf.errors import DatasetError

NAME = "ml-test"
FILES = {
    f"{NAME}/ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,0\n2,1,3.5,1\n",
    f"{NAME}/movies.csv": b"movieId,title,genres\n1,Toy Story (1995),Animation\n",
    f"{NAME}/README.txt": b"test data\n",
}


class _Handler(SimpleHTTPRequestHandler):
    """Serves files; ``/truncated.zip`` promises more bytes than it sends, then closes."""

    def do_GET(self):  # noqa: N802 (http.server naming)
        if self.path == "/truncated.zip":
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", "100000")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"PK\x03\x04" + b"\0" * 96)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, format, *args):  # keep test output quiet
        pass


class _Server:
    def __init__(self, root: Path):
        self.root = root
        self.httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,),
                                       daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    srv = _Server(root)
    yield srv
    srv.stop()


@pytest.fixture
def cache(tmp_path):
    path = tmp_path / "cache"
    path.mkdir()
    return path


def make_zip(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> str:
    """Write a zip of ``files`` (and symlink entries) to ``path``; return its SHA-256."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, dest in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, dest)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def registry(url: str, sha256: str | None, name: str = NAME) -> dict[str, DatasetInfo]:
    info = DatasetInfo(name, url, sha256, None, f"{name}/ratings.csv", f"{name}/movies.csv",
                       "a tiny test dataset")
    return {name: info}


def served(server: _Server, files=FILES, **kw) -> tuple[str, str]:
    """Serve a zip of ``files``; return its URL and SHA-256."""
    digest = make_zip(server.root / f"{NAME}.zip", files, **kw)
    return f"{server.url}/{NAME}.zip", digest


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{NAME}.zip"


def test_registry_is_well_formed():
    assert set(DATASETS) == {"ml-latest-small", "ml-100k", "ml-1m", "ml-25m"}
    for name, info in DATASETS.items():
        assert info.name == name
        assert info.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256)
        assert info.size_bytes > 0
        assert info.ratings.startswith(name + "/") and info.movies.startswith(name + "/")


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NPCF_DATA", str(tmp_path / "d"))
    assert cache_dir() == tmp_path / "d"
    monkeypatch.delenv("NPCF_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "npcf"


def test_fetch_downloads_extracts_then_works_offline(server, tmp_path, monkeypatch, capfd):
    url, digest = served(server)
    reg = registry(url, digest)
    monkeypatch.setenv("NPCF_DATA", str(tmp_path / "envcache"))

    out = fetch(NAME, registry=reg)

    assert out == tmp_path / "envcache" / NAME
    for rel, data in FILES.items():
        assert (out / rel).read_bytes() == data
    assert json.loads((out / download.MARKER).read_text())["sha256"] == digest
    assert sorted(p.name for p in out.parent.iterdir()) == [NAME, f"{NAME}.zip"]
    assert capfd.readouterr().err == ""  # stderr is not a terminal: no progress bar

    server.stop()
    assert fetch(NAME, registry=reg) == out


def test_progress_bar_on_terminal(server, cache, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    fake = Tty()
    monkeypatch.setattr(sys, "stderr", fake)
    url, digest = served(server)
    fetch(NAME, cache=cache, registry=registry(url, digest), progress=progress_bar)
    assert NAME in fake.getvalue()


def test_checksum_mismatch_leaves_nothing(server, cache):
    url, digest = served(server)
    wrong = "0" * 64
    with pytest.raises(DatasetError) as err:
        fetch(NAME, cache=cache, registry=registry(url, wrong), progress=None)
    msg = str(err.value)
    assert NAME in msg and wrong in msg and digest in msg
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("kind", ["dotdot", "nested-dotdot", "absolute", "symlink"])
def test_unsafe_entries_refused(server, cache, tmp_path, kind):
    outside = tmp_path / "abs-evil.txt"
    files = dict(FILES)
    symlinks = {}
    if kind == "dotdot":
        files["../evil.txt"] = b"pwned"
    elif kind == "nested-dotdot":
        files[f"{NAME}/../../evil.txt"] = b"pwned"
    elif kind == "absolute":
        files[str(outside)] = b"pwned"
    else:
        symlinks[f"{NAME}/link"] = str(tmp_path)
    url, digest = served(server, files, symlinks=symlinks)

    with pytest.raises(DatasetError, match="unsafe entry"):
        fetch(NAME, cache=cache, registry=registry(url, digest), progress=None)

    assert not outside.exists()
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))
    assert list(cache.iterdir()) == []


def test_interrupted_transfer_leaves_no_partial_file(server, cache):
    reg = registry(f"{server.url}/truncated.zip", "0" * 64)
    with pytest.raises(DatasetError, match="interrupted") as err:
        fetch(NAME, cache=cache, registry=reg, progress=None)
    assert "\n" not in str(err.value)
    assert list(cache.iterdir()) == []


def test_offline_without_cache_says_where_to_put_the_file(cache):
    url = closed_port_url()
    with pytest.raises(DatasetError) as err:
        fetch(NAME, cache=cache, registry=registry(url, "0" * 64), progress=None)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot download {NAME} (")
    assert url in msg and str(cache / f"{NAME}.zip") in msg
    assert list(cache.iterdir()) == []


def test_manually_placed_zip_works_offline(cache):
    digest = make_zip(cache / f"{NAME}.zip", FILES)
    out = fetch(NAME, cache=cache, registry=registry(closed_port_url(), digest), progress=None)
    assert (out / f"{NAME}/ratings.csv").read_bytes() == FILES[f"{NAME}/ratings.csv"]


def test_manually_placed_bad_zip_rejected(cache):
    """An archive put there by hand that fails the checksum is refused but kept aside
    (GroupLens re-issues its archives: the user's download may be genuine)."""
    make_zip(cache / f"{NAME}.zip", FILES)
    before = (cache / f"{NAME}.zip").read_bytes()
    with pytest.raises(DatasetError, match="checksum mismatch.*kept as .*ml-test.zip.rejected"):
        fetch(NAME, cache=cache, registry=registry(closed_port_url(), "1" * 64), progress=None)
    assert [p.name for p in cache.iterdir()] == [f"{NAME}.zip.rejected"]
    assert (cache / f"{NAME}.zip.rejected").read_bytes() == before


def test_half_finished_extract_is_redone_from_kept_zip(cache):
    digest = make_zip(cache / f"{NAME}.zip", FILES)
    reg = registry(closed_port_url(), digest)
    out = fetch(NAME, cache=cache, registry=reg, progress=None)
    (out / download.MARKER).unlink()
    (out / f"{NAME}/movies.csv").unlink()
    assert fetch(NAME, cache=cache, registry=reg, progress=None) == out
    assert (out / f"{NAME}/movies.csv").exists() and (out / download.MARKER).exists()


def test_trust_on_first_use(server, cache):
    url, digest = served(server)
    reg = registry(url, None)
    out = fetch(NAME, cache=cache, registry=reg, progress=None)
    assert (cache / f"{NAME}.zip.sha256").read_text().strip() == digest
    assert fetch(NAME, cache=cache, registry=reg, progress=None) == out

    # The server now hands out a different archive: it must not be trusted.
    _, other = served(server, {**FILES, f"{NAME}/extra.txt": b"changed"})
    (cache / f"{NAME}.zip").unlink()
    shutil.rmtree(out)
    with pytest.raises(DatasetError, match="checksum mismatch") as err:
        fetch(NAME, cache=cache, registry=reg, progress=None)
    assert digest in str(err.value) and other in str(err.value)
    assert not out.exists() and not (cache / f"{NAME}.zip").exists()


def test_not_a_zip_is_deleted(server, cache):
    (server.root / f"{NAME}.zip").write_bytes(b"this is not a zip archive")
    with pytest.raises(DatasetError, match="not a valid zip"):
        fetch(NAME, cache=cache, registry=registry(f"{server.url}/{NAME}.zip", None),
              progress=None)
    assert list(cache.iterdir()) == []


def test_http_error_is_one_line(server, cache):
    with pytest.raises(DatasetError, match="404") as err:
        fetch(NAME, cache=cache, registry=registry(f"{server.url}/missing.zip", None),
              progress=None)
    assert "\n" not in str(err.value)


def test_unknown_name_lists_known():
    with pytest.raises(DatasetError) as err:
        fetch("ml-nope")
    for name in DATASETS:
        assert name in str(err.value)


def test_list_datasets(server, cache):
    url, digest = served(server)
    reg = registry(url, digest)
    [row] = list_datasets(cache, registry=reg)
    assert row == {"name": NAME, "size_bytes": None, "cached": False, "url": url,
                   "description": "a tiny test dataset"}
    fetch(NAME, cache=cache, registry=reg, progress=None)
    assert list_datasets(cache, registry=reg)[0]["cached"] is True

    rows = list_datasets(cache)
    assert [r["name"] for r in rows] == list(DATASETS)
    assert not any(r["cached"] for r in rows)
    assert set(rows[0]) == {"name", "size_bytes", "cached", "url", "description"}
