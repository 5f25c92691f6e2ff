"""The vendor's DLC loader accepts the DLCs ctxbin writes.

``libQnnSystem.so`` (from ``onnxruntime-qnn``) exposes ``QnnSystemDlc_createFromFile``
through its system interface's function table (slot ``systemDlcCreateFromFile``,
ORACLES.md). It is called in a child process: the library may crash once ORT's
QNN provider ran in the same process, and a crash must fail one test, not
pytest. The loader returns 0 for a DLC it accepts and 1002 for a truncated or
garbage file. Note what it proves: the archive and its entries are what QNN
expects (it opens the zip and the entries eagerly); in QNN 2.51 it parses the
graph flatbuffers lazily, so the field-by-field comparison in
test_dlc_write.py is what checks their contents.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from ctxbin.convert import convert
from ctxbin.formats import dlc

from . import dlc_oracle as oracle
from .test_dlc_write import MODELS

_CHILD = r"""
import json, sys, cffi
ffi = cffi.FFI()
ffi.cdef('''
typedef uint64_t Qnn_ErrorHandle_t;
typedef struct { uint32_t major; uint32_t minor; uint32_t patch; } Qnn_Version_t;
typedef Qnn_ErrorHandle_t (*DlcCreateFromFileFn)(void* logger, const char* path, void** dlc);
typedef Qnn_ErrorHandle_t (*DlcFreeFn)(void* dlc);
typedef struct {
    uint32_t backendId; const char* providerName; Qnn_Version_t systemApiVersion; void* table[16];
} QnnSystemInterface_t;
Qnn_ErrorHandle_t QnnSystemInterface_getProviders(const QnnSystemInterface_t*** providers, uint32_t* n);
''')
lib = ffi.dlopen(sys.argv[1])
providers, count = ffi.new("QnnSystemInterface_t***"), ffi.new("uint32_t*")
if lib.QnnSystemInterface_getProviders(providers, count) or count[0] < 1:
    sys.exit("QnnSystemInterface_getProviders failed")
table = providers[0][0].table
# system API 1.15 table order: ..., systemDlcCreateFromFile (8), ..., systemDlcFree (12)
create = ffi.cast("DlcCreateFromFileFn", table[8])
free = ffi.cast("DlcFreeFn", table[12])
codes = {}
for path in sys.argv[2:]:
    handle = ffi.new("void**")
    codes[path] = int(create(ffi.NULL, path.encode(), handle)) & 0xFFFF
    if codes[path] == 0:
        free(handle[0])
print(json.dumps(codes))
"""


def vendor_codes(paths: list[Path]) -> dict[str, int]:
    from ctxbin.runtime.qnn_system import find_library

    try:
        lib = find_library()
    except Exception as e:  # BackendUnavailableError: says where it looked
        pytest.skip(str(e))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(lib), *map(str, paths)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"libQnnSystem child failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return {Path(k).name: v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ctxbin's DLCs: each oracle model, a two-graph file and a ZIP64 file."""
    oracle.require_qnn()
    tmp = tmp_path_factory.mktemp("vendor_accepts")
    sources = oracle.make_dlcs({k: make() for k, make in MODELS.items()}, tmp)
    out = {}
    for name, src in sources.items():
        out[name] = tmp / f"ctxbin_{name}.dlc"
        dlc.write(dlc.read(src), out[name])
    c = dlc.read(sources["conv"])
    g = c.graphs[0]
    out["two_graphs"] = tmp / "ctxbin_two_graphs.dlc"
    dlc.write(dataclasses.replace(c, graphs=(dataclasses.replace(g, name="prompt"), dataclasses.replace(g, name="token"))), out["two_graphs"])
    out["zip64"] = tmp / "ctxbin_zip64.dlc"
    limit = dlc._ZIP32_MAX
    dlc._ZIP32_MAX = 1000  # ZIP64 records as > 4 GB weights would need them
    try:
        dlc.write(c, out["zip64"])
    finally:
        dlc._ZIP32_MAX = limit
    if importlib.util.find_spec("ctxbin.passes.onnx_to_qnn") is not None:  # ctxbin's own lowering, no vendor code
        src = tmp / "conv_net.onnx"
        onnx.save(oracle.float_conv_net(), src)
        out["ctxbin_route"] = tmp / "ctxbin_route.dlc"
        convert(src, out["ctxbin_route"], route="ctxbin")
    return out


def test_vendor_loader_accepts_ctxbin_dlcs(written: dict[str, Path]) -> None:
    codes = vendor_codes(list(written.values()))
    assert codes == {p.name: 0 for p in written.values()}


def test_vendor_loader_rejects_broken_files(written: dict[str, Path], tmp_path: Path) -> None:
    good = written["conv"].read_bytes()
    truncated = tmp_path / "truncated.dlc"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.dlc"
    garbage.write_bytes(bytes(range(256)) * 16)
    assert vendor_codes([truncated, garbage]) == {"truncated.dlc": 1002, "garbage.dlc": 1002}
