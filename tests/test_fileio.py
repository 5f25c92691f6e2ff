"""Atomic writes: the target is either the old file or the complete new one,
even when the writing process is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ctxbin.fileio import TEMP_SUFFIX, atomic_write, write_bytes_atomic
from ctxbin.formats import ctxbin as cb
from ctxbin.ir import Container, DType, Graph, Tensor, TensorKind
from ctxbin.weights import Blob

REPO = Path(__file__).resolve().parents[1]


def test_replaces_the_target(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    write_bytes_atomic(target, b"first")
    assert target.read_bytes() == b"first"
    with atomic_write(target) as f:
        f.write(b"second, ")
        f.write(memoryview(b"streamed"))
        assert target.read_bytes() == b"first"  # untouched until the block exits
    assert target.read_bytes() == b"second, streamed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_error_leaves_target_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"original")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"partial")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_keeps_mode_of_existing_file_and_uses_umask_for_new(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"x")
    os.chmod(target, 0o640)
    write_bytes_atomic(target, b"y")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    old = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "new.bin", b"z")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o640


def test_relative_path_and_no_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_bytes_atomic("rel.bin", b"abc", fsync=False)
    assert (tmp_path / "rel.bin").read_bytes() == b"abc"


def test_missing_directory_is_an_oserror_naming_the_target(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir.bin"
    with pytest.raises(FileNotFoundError) as e:
        write_bytes_atomic(target, b"")
    # the user's path, not the hidden temporary file's name
    assert e.value.filename == str(target) and TEMP_SUFFIX not in str(e.value)
    assert "no directory" in str(e.value)


# --------------------------------------------------------------------------- kill -9 mid-write

CHILD = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from ctxbin.formats import ctxbin as cb
    from ctxbin.ir import Container, DType, Graph, Tensor, TensorKind
    from ctxbin.weights import Blob

    target, ready, where = sys.argv[1:4]

    def stall():
        open(ready, "w").close()
        time.sleep(120)  # the parent kills us here

    if where == "blobs":  # stop after two blobs went to the temp file
        calls = []
        real = Blob.verify
        def verify(self):
            # blobs are also verified while hashed, before the temp file exists
            if any(n.endswith(".ctxbin-tmp") for n in os.listdir(os.path.dirname(target))):
                calls.append(1)
                if len(calls) == 3:
                    stall()
            return real(self)
        Blob.verify = verify
    else:  # stop after every byte is written, before the rename
        os.fsync = lambda fd: stall()

    rng = np.random.default_rng(1)
    tensors = {
        f"w{i}": Tensor(f"w{i}", DType.UINT8, (1 << 20,), TensorKind.STATIC,
                        data=Blob.from_array(rng.integers(0, 255, 1 << 20, dtype=np.uint8)))
        for i in range(8)
    }
    cb.write(Container((Graph("new", (), (), (), tensors),)), target)
    """
)


@pytest.mark.parametrize("where", ["blobs", "before_rename"])
def test_sigkill_mid_write_keeps_the_old_file(tmp_path: Path, where: str) -> None:
    target = tmp_path / "model.ctxbin"
    old = Tensor("w", DType.FLOAT32, (4,), TensorKind.STATIC, data=Blob.from_array(np.arange(4, dtype=np.float32)))
    cb.write(Container((Graph("old", (), (), (), {"w": old}),)), target)
    before = target.read_bytes()
    ready = tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(ready), where], env=env,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if child.poll() is not None:
                pytest.fail(f"child exited early: {child.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("child never reached the middle of the write")
            time.sleep(0.02)
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]
        assert len(temps) == 1 and temps[0].name.startswith(".model.ctxbin.")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    assert cb.read(target, verify=True).graph_names == ["old"]
    names = {p.name for p in tmp_path.iterdir()}
    assert names - {"model.ctxbin", "ready"} == {temps[0].name}  # only the dead writer's temp file
