"""ctxbin.weights.write_blobs: the streaming loop both file writers share."""

from __future__ import annotations

import mmap
import os

import pytest

from ctxbin.errors import ChecksumError
from ctxbin.hashing import xxh3_64
from ctxbin.weights import Blob, BlobCopy, write_blobs


def _open_fds() -> int:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to count open descriptors")
    return len(os.listdir("/proc/self/fd"))


def _mapped(tmp_path, data: bytes) -> mmap.mmap:
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    with open(src, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def test_gaps_are_zero_and_bytes_land_at_their_offsets(tmp_path):
    data = bytes(range(256)) * 4
    m = _mapped(tmp_path, data)
    blobs = [Blob(m, 0, 10, file=str(tmp_path / "src.bin")), Blob(b"xyz"), Blob(m, 100, 50, file=str(tmp_path / "src.bin"))]
    out = tmp_path / "out.bin"
    before = _open_fds()
    with open(out, "wb") as f:
        f.write(b"HEAD")
        write_blobs(f, blobs, [0, 64, 128])
    assert _open_fds() == before
    got = out.read_bytes()
    assert got == b"HEAD" + data[:10] + bytes(54) + b"xyz" + bytes(61) + data[100:150]


def test_source_descriptors_are_closed_when_a_copy_fails(tmp_path):
    data = os.urandom(4096)
    m = _mapped(tmp_path, data)
    path = str(tmp_path / "src.bin")
    good = Blob(m, 0, 1000, file=path)
    bad = Blob(m, 2048, 1000, file=path, expected_hash=xxh3_64(data[2048:3048]) ^ 1)
    before = _open_fds()
    with open(tmp_path / "out.bin", "wb") as f, pytest.raises(ChecksumError):
        write_blobs(f, [good, bad], [0, 1024])
    assert _open_fds() == before


def test_a_prepared_copy_checks_every_blob_before_the_writing_thread_starts(tmp_path):
    """BlobCopy is made where the writer runs and written by a worker thread
    (dlc.write): damage is found while it is made, with its sources closed,
    and writing it afterwards writes every run."""
    data = os.urandom(8192)
    m = _mapped(tmp_path, data)
    path = str(tmp_path / "src.bin")
    good = [Blob(m, 0, 1000, file=path), Blob(b"abc"), Blob(m, 4096, 100, file=path, expected_hash=xxh3_64(data[4096:4196]))]
    bad = Blob(m, 2048, 1000, file=path, expected_hash=xxh3_64(data[2048:3048]) ^ 1)
    before = _open_fds()
    with pytest.raises(ChecksumError):
        BlobCopy([good[0], bad], [0, 1024])
    assert _open_fds() == before
    with BlobCopy(good, [0, 1024, 2048]) as copy, open(tmp_path / "out.bin", "wb") as f:
        assert _open_fds() == before + 2  # the source, opened up front, and the output
        copy.write(f)
    assert _open_fds() == before
    assert (tmp_path / "out.bin").read_bytes() == data[:1000] + bytes(24) + b"abc" + bytes(1021) + data[4096:4196]
