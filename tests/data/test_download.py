import hashlib

import pytest

from deqfusion.data import download
from deqfusion.errors import DataError


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_sha256_and_parse_checksums(tmp_path):
    digest = _write(tmp_path / "a.csv", b"1,2,3\n")
    assert download.sha256_file(tmp_path / "a.csv") == digest
    text = f"# comment\n{digest}  rosmap/a.csv\n\n{'0' * 64} *b.csv\n"
    assert download.parse_checksums(text) == {"a.csv": digest, "b.csv": "0" * 64}
    with pytest.raises(DataError, match="line 1"):
        download.parse_checksums("nothex  a.csv\n")
    with pytest.raises(DataError, match="line 1"):
        download.parse_checksums("onlyonefield\n")
    with pytest.raises(DataError, match="two different hashes"):
        download.parse_checksums(f"{'0' * 64}  x/a.csv\n{'1' * 64}  y/a.csv\n")
    (tmp_path / "sums").write_text(f"{digest}  a.csv\n")
    assert download.read_checksums(tmp_path / "sums") == {"a.csv": digest}
    with pytest.raises(DataError, match="cannot read"):
        download.read_checksums(tmp_path / "missing")


def test_fetch_file_from_local_path_and_file_url(tmp_path):
    digest = _write(tmp_path / "src" / "a.csv", b"hello\n")
    dest = download.fetch_file(tmp_path / "src" / "a.csv", tmp_path / "cache" / "a.csv", digest)
    assert dest.read_bytes() == b"hello\n"
    url = (tmp_path / "src").as_uri()
    dest2 = download.fetch_files(url, ["a.csv"], tmp_path / "cache2", {"a.csv": digest})
    assert (dest2 / "a.csv").read_bytes() == b"hello\n"


def test_fetch_file_rejects_a_wrong_hash_and_leaves_nothing(tmp_path):
    _write(tmp_path / "src" / "a.csv", b"tampered\n")
    good = hashlib.sha256(b"original\n").hexdigest()
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        download.fetch_file(tmp_path / "src" / "a.csv", tmp_path / "cache" / "a.csv", good)
    assert list((tmp_path / "cache").iterdir()) == []


def test_fetch_replaces_a_corrupt_cached_file(tmp_path):
    digest = _write(tmp_path / "src" / "a.csv", b"good\n")
    _write(tmp_path / "cache" / "a.csv", b"corrupt\n")
    download.fetch_file(tmp_path / "src" / "a.csv", tmp_path / "cache" / "a.csv", digest)
    assert (tmp_path / "cache" / "a.csv").read_bytes() == b"good\n"


def test_fetch_errors(tmp_path):
    with pytest.raises(DataError, match="cannot copy"):
        download.fetch_file(tmp_path / "nope.csv", tmp_path / "out.csv")
    with pytest.raises(DataError, match="download of file:"):
        download.fetch_file((tmp_path / "nope.csv").as_uri(), tmp_path / "out.csv")
    with pytest.raises(DataError, match="no recorded SHA-256"):
        download.fetch_files(tmp_path, ["x.csv"], tmp_path / "c", {}, require_checksums=True)
    assert not (tmp_path / "out.csv").exists()


def test_verify_folder(tmp_path):
    digest = _write(tmp_path / "a.csv", b"x\n")
    download.verify_folder(tmp_path, {"a.csv": digest})
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        download.verify_folder(tmp_path, {"a.csv": "0" * 64})
    with pytest.raises(DataError, match="file not found"):
        download.verify_folder(tmp_path, {"b.csv": digest})
    with pytest.raises(DataError, match="no recorded"):
        download.verify_folder(tmp_path, {"a.csv": digest}, ["c.csv"])


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DEQFUSION_CACHE_DIR", str(tmp_path / "c"))
    assert download.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DEQFUSION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert download.default_cache_dir() == tmp_path / "x" / "deqfusion"
