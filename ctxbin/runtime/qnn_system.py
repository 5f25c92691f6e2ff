"""The vendor's view of a QNN context binary, through ``libQnnSystem.so``.

A small cffi ABI-mode binding: ``QnnSystemInterface_getProviders`` gives the
system API's function table; ``systemContextCreate`` /
``systemContextGetBinaryInfo`` / ``systemContextFree`` read a binary's
metadata. The C structures that come back (BinaryInfo v1-v3, GraphInfo v1-v3,
``Qnn_Tensor_t`` v1/v2 with quantization parameters, the HTP graph and context
info blobs) are copied into plain frozen dataclasses before the system context
is freed, so nothing returned points into library memory.

ctxbin's own reader (:mod:`ctxbin.formats.qnn`) does not need this module; it
is the oracle that reader is checked against, and a second opinion for users
who have the library. The library is found at an explicit path, under
``$QNN_SDK_ROOT/lib/x86_64-linux-clang/``, or in the ``onnxruntime_qnn``
package directory. A malformed binary can crash native code:
:func:`binary_info_isolated` runs the call in a child process and turns a
crash into :class:`~ctxbin.errors.BackendError`.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import BackendError, BackendUnavailableError
from ..formats.qnn import HtpGraphBlobInfo, decode_htp_graph_blob
from ..ir import DType, QuantEncoding, QuantKind

__all__ = [
    "SysTensor",
    "SysGraphInfo",
    "SysBinaryInfo",
    "QnnSystem",
    "find_library",
    "binary_info_isolated",
    "binary_infos_isolated",
]

_LIB_NAME = "libQnnSystem.so"

# Declarations written from the public QNN headers' field order (QnnTypes.h,
# QnnSystemContext.h, QnnSystemInterface.h, QnnDevice.h). C enums are 32-bit,
# declared here as int32_t; unions we never read are replaced by a member of
# the same size and alignment.
_CDEF = """
typedef uint64_t Qnn_ErrorHandle_t;
typedef struct { uint32_t major; uint32_t minor; uint32_t patch; } Qnn_Version_t;

typedef struct { float scale; int32_t offset; } Qnn_ScaleOffset_t;
typedef struct { int32_t axis; uint32_t numScaleOffsets; Qnn_ScaleOffset_t* scaleOffset; } Qnn_AxisScaleOffset_t;
typedef struct { uint32_t bitwidth; float scale; int32_t offset; } Qnn_BwScaleOffset_t;
typedef struct { uint32_t bitwidth; int32_t axis; uint32_t numElements; float* scales; int32_t* offsets; } Qnn_BwAxisScaleOffset_t;
typedef struct { uint32_t* blockSize; Qnn_ScaleOffset_t* scaleOffset; } Qnn_BlockEncoding_t;
typedef struct {
    int32_t axis; Qnn_ScaleOffset_t* scaleOffsets; uint32_t numBlocksPerAxis;
    uint32_t blockScaleBitwidth; int32_t blockScaleStorageType; void* blocksScale;
} Qnn_BlockwiseExpansion_t;
typedef struct {
    int32_t encodingDefinition;
    int32_t quantizationEncoding;
    union {
        Qnn_ScaleOffset_t scaleOffsetEncoding;
        Qnn_AxisScaleOffset_t axisScaleOffsetEncoding;
        Qnn_BwScaleOffset_t bwScaleOffsetEncoding;
        Qnn_BwAxisScaleOffset_t bwAxisScaleOffsetEncoding;
        Qnn_BlockEncoding_t blockEncoding;
        Qnn_BlockwiseExpansion_t* blockwiseExpansion;
    };
} Qnn_QuantizeParams_t;

typedef struct { void* data; uint32_t dataSize; } Qnn_ClientBuffer_t;
typedef struct { int32_t type; uint32_t numSpecifiedElements; uint32_t numSparseDimensions; } Qnn_SparseParams_t;
typedef struct {
    uint32_t id; const char* name; int32_t type; uint32_t dataFormat; int32_t dataType;
    Qnn_QuantizeParams_t quantizeParams; uint32_t rank; uint32_t* dimensions; int32_t memType;
    Qnn_ClientBuffer_t clientBuf;
    uint8_t* isDynamicDimensions; Qnn_SparseParams_t sparseParams; uint8_t isProduced;
} Qnn_TensorV2_t;
typedef struct { int32_t version; Qnn_TensorV2_t v2; } Qnn_Tensor_t;

typedef struct {
    const char* graphName;
    uint32_t numGraphInputs; Qnn_Tensor_t* graphInputs;
    uint32_t numGraphOutputs; Qnn_Tensor_t* graphOutputs;
    uint32_t numUpdateableTensors; Qnn_Tensor_t* updateableTensors;
    uint32_t graphBlobInfoSize; void* graphBlobInfo;
    uint32_t startOpIndex; uint32_t endOpIndex;
} QnnSystemContext_GraphInfoV3_t;
typedef struct { int32_t version; QnnSystemContext_GraphInfoV3_t v; } QnnSystemContext_GraphInfo_t;

typedef struct { uint32_t coreId; uint32_t coreType; void* ext; } QnnDevice_CoreInfoV1_t;
typedef struct { int32_t version; QnnDevice_CoreInfoV1_t v1; } QnnDevice_CoreInfo_t;
typedef struct {
    uint32_t deviceId; uint32_t deviceType; uint32_t numCores; QnnDevice_CoreInfo_t* cores; void* ext;
} QnnDevice_HardwareDeviceInfoV1_t;
typedef struct { int32_t version; QnnDevice_HardwareDeviceInfoV1_t v1; } QnnDevice_HardwareDeviceInfo_t;
typedef struct { uint32_t numHwDevices; QnnDevice_HardwareDeviceInfo_t* hwDevices; } QnnDevice_PlatformInfoV1_t;
typedef struct { int32_t version; QnnDevice_PlatformInfoV1_t v1; } QnnDevice_PlatformInfo_t;

typedef struct {
    uint32_t backendId; const char* buildId;
    Qnn_Version_t coreApiVersion; Qnn_Version_t backendApiVersion; const char* socVersion;
    Qnn_Version_t hwInfoBlobVersion; Qnn_Version_t contextBlobVersion;
    uint32_t hwInfoBlobSize; void* hwInfoBlob; uint64_t contextBlobSize;
    uint32_t numContextTensors; Qnn_Tensor_t* contextTensors;
    uint32_t numGraphs; QnnSystemContext_GraphInfo_t* graphs;
    QnnDevice_PlatformInfo_t* platformInfo;
} QnnSystemContext_BinaryInfoV12_t;
typedef struct {
    uint32_t backendId; const char* buildId;
    Qnn_Version_t coreApiVersion; Qnn_Version_t backendApiVersion; const char* socVersion;
    Qnn_Version_t contextBlobVersion; uint64_t contextBlobSize;
    uint32_t numContextTensors; Qnn_Tensor_t* contextTensors;
    uint32_t numGraphs; QnnSystemContext_GraphInfo_t* graphs;
    QnnDevice_PlatformInfo_t* platformInfo;
    uint32_t contextMetadataSize; void* contextMetadata; uint32_t socModel;
} QnnSystemContext_BinaryInfoV3_t;
typedef struct {
    int32_t version;
    union { QnnSystemContext_BinaryInfoV12_t v12; QnnSystemContext_BinaryInfoV3_t v3; };
} QnnSystemContext_BinaryInfo_t;

typedef Qnn_ErrorHandle_t (*CtxCreateFn)(void** handle);
typedef Qnn_ErrorHandle_t (*CtxGetBinaryInfoFn)(void* handle, void* buf, uint64_t size,
                                                 const QnnSystemContext_BinaryInfo_t** info,
                                                 uint64_t* infoSize);
typedef Qnn_ErrorHandle_t (*CtxFreeFn)(void* handle);
typedef struct {
    CtxCreateFn systemContextCreate;
    CtxGetBinaryInfoFn systemContextGetBinaryInfo;
    void* systemContextGetMetaData;
    CtxFreeFn systemContextFree;
    void* rest[12];
} QnnSystemInterfaceTable_t;
typedef struct {
    uint32_t backendId; const char* providerName; Qnn_Version_t systemApiVersion;
    QnnSystemInterfaceTable_t table;
} QnnSystemInterface_t;
Qnn_ErrorHandle_t QnnSystemInterface_getProviders(const QnnSystemInterface_t*** providers,
                                                  uint32_t* numProviders);
"""

@functools.lru_cache(maxsize=None)
def _get_ffi() -> Any:
    """The cffi declarations (parsed once: an immutable description)."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    return ffi


Version = tuple[int, int, int]


@dataclass(frozen=True)
class SysTensor:
    """One ``Qnn_Tensor_t`` as libQnnSystem reports it."""

    version: int
    id: int
    name: str
    type: int
    data_format: int
    dtype: DType | int
    encoding: QuantEncoding | None
    shape: tuple[int, ...]
    mem_type: int
    dynamic_dims: tuple[bool, ...] | None  # v2 only
    is_produced: int | None  # v2 only


@dataclass(frozen=True)
class SysGraphInfo:
    version: int
    name: str
    inputs: tuple[SysTensor, ...]
    outputs: tuple[SysTensor, ...]
    updateable: tuple[SysTensor, ...] = ()
    blob_info: bytes = b""
    htp_blob_info: HtpGraphBlobInfo | None = None
    start_op_index: int | None = None
    end_op_index: int | None = None


@dataclass(frozen=True)
class SysBinaryInfo:
    """``QnnSystemContext_BinaryInfo_t`` (any version) as plain Python values."""

    version: int
    backend_id: int
    build_id: str
    core_api_version: Version
    backend_api_version: Version
    soc_version: str
    context_blob_version: Version
    context_blob_size: int
    context_tensors: tuple[SysTensor, ...]
    graphs: tuple[SysGraphInfo, ...]
    hw_info_blob_version: Version | None = None  # v1/v2
    hw_info_blob: bytes = b""  # v1/v2
    platform_devices: tuple[tuple[int, int, tuple[tuple[int, int], ...]], ...] = ()  # v2/v3
    context_metadata: bytes = b""  # v3
    soc_model: int | None = None  # v3
    dsp_arch: int | None = None  # v3, from the HTP context metadata

    @property
    def graph_names(self) -> list[str]:
        return [g.name for g in self.graphs]


def find_library(path: str | os.PathLike[str] | None = None, *, name: str = _LIB_NAME) -> Path:
    """Where QNN library ``name`` (default ``libQnnSystem.so``) is: ``path`` (a
    file or directory), ``$QNN_SDK_ROOT/lib/x86_64-linux-clang``, or the
    ``onnxruntime_qnn`` package directory. Cheap: nothing is loaded."""
    tried: list[str] = []
    candidates: list[Path] = []
    if path is not None:
        p = Path(path)
        candidates.append(p / name if p.is_dir() else p)
    else:
        root = os.environ.get("QNN_SDK_ROOT")
        if root:
            candidates.append(Path(root) / "lib" / "x86_64-linux-clang" / name)
        else:
            tried.append("$QNN_SDK_ROOT (not set)")
        try:
            import importlib.util

            spec = importlib.util.find_spec("onnxruntime_qnn")
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin:
            candidates.append(Path(spec.origin).parent / name)
        else:
            tried.append("the onnxruntime_qnn package (not installed; pip install 'ctxbin[htp]')")
    for c in candidates:
        if c.is_file():
            return c
        tried.append(str(c))
    raise BackendUnavailableError(f"{name} not found; looked in: " + "; ".join(tried))


def _code(err: int) -> int:
    """The error code of a ``Qnn_ErrorHandle_t``: its low 16 bits (QnnCommon.h);
    the upper bits are not reliably zeroed by every build."""
    return int(err) & 0xFFFF


def _str(ffi: Any, p: Any) -> str:
    return "" if p == ffi.NULL else ffi.string(p).decode("utf-8", "replace")


def _ver(v: Any) -> Version:
    return (int(v.major), int(v.minor), int(v.patch))


def _dtype(code: int) -> DType | int:
    try:
        return DType(code)
    except ValueError:
        return code


def _encoding(ffi: Any, q: Any) -> QuantEncoding | None:
    kind = int(q.quantizationEncoding)
    if kind == QuantKind.NONE or int(q.encodingDefinition) != 1:  # 1 = QNN_DEFINITION_DEFINED
        return None
    if kind == QuantKind.SCALE_OFFSET:
        so = q.scaleOffsetEncoding
        return QuantEncoding(QuantKind.SCALE_OFFSET, (float(so.scale),), (int(so.offset),))
    if kind == QuantKind.AXIS_SCALE_OFFSET:
        a = q.axisScaleOffsetEncoding
        n = int(a.numScaleOffsets)
        return QuantEncoding(
            QuantKind.AXIS_SCALE_OFFSET,
            tuple(float(a.scaleOffset[i].scale) for i in range(n)),
            tuple(int(a.scaleOffset[i].offset) for i in range(n)),
            axis=int(a.axis),
        )
    if kind == QuantKind.BW_SCALE_OFFSET:
        b = q.bwScaleOffsetEncoding
        return QuantEncoding(QuantKind.BW_SCALE_OFFSET, (float(b.scale),), (int(b.offset),), bitwidth=int(b.bitwidth))
    if kind == QuantKind.BW_AXIS_SCALE_OFFSET:
        b = q.bwAxisScaleOffsetEncoding
        n = int(b.numElements)
        offs = tuple(int(b.offsets[i]) for i in range(n)) if b.offsets != ffi.NULL else (0,) * n
        return QuantEncoding(
            QuantKind.BW_AXIS_SCALE_OFFSET,
            tuple(float(b.scales[i]) for i in range(n)),
            offs,
            axis=int(b.axis),
            bitwidth=int(b.bitwidth),
        )
    # block encodings need the tensor's shape to size their arrays: kind only
    return QuantEncoding(QuantKind(kind) if kind in QuantKind._value2member_map_ else QuantKind.NONE)


def _tensor(ffi: Any, t: Any) -> SysTensor:
    version = int(t.version)
    v = t.v2  # v1 is a prefix of v2
    rank = int(v.rank)
    dims = tuple(int(v.dimensions[i]) for i in range(rank)) if v.dimensions != ffi.NULL else ()
    dyn = None
    produced = None
    if version == 2:
        if v.isDynamicDimensions != ffi.NULL:
            dyn = tuple(bool(v.isDynamicDimensions[i]) for i in range(rank))
        produced = int(v.isProduced)
    return SysTensor(
        version=version,
        id=int(v.id),
        name=_str(ffi, v.name),
        type=int(v.type),
        data_format=int(v.dataFormat),
        dtype=_dtype(int(v.dataType)),
        encoding=_encoding(ffi, v.quantizeParams),
        shape=dims,
        mem_type=int(v.memType),
        dynamic_dims=dyn,
        is_produced=produced,
    )


def _tensors(ffi: Any, arr: Any, n: int) -> tuple[SysTensor, ...]:
    if arr == ffi.NULL:
        return ()
    return tuple(_tensor(ffi, arr[i]) for i in range(n))


def _graph(ffi: Any, g: Any) -> SysGraphInfo:
    version = int(g.version)
    v = g.v  # v1 and v2 are prefixes of v3
    inputs = _tensors(ffi, v.graphInputs, int(v.numGraphInputs))
    outputs = _tensors(ffi, v.graphOutputs, int(v.numGraphOutputs))
    if version == 1:
        return SysGraphInfo(version, _str(ffi, v.graphName), inputs, outputs)
    upd = _tensors(ffi, v.updateableTensors, int(v.numUpdateableTensors))
    if version == 2:
        return SysGraphInfo(version, _str(ffi, v.graphName), inputs, outputs, upd)
    blob = b""
    if v.graphBlobInfo != ffi.NULL and v.graphBlobInfoSize:
        blob = bytes(ffi.buffer(v.graphBlobInfo, int(v.graphBlobInfoSize)))
    return SysGraphInfo(
        version, _str(ffi, v.graphName), inputs, outputs, upd, blob,
        decode_htp_graph_blob(blob), int(v.startOpIndex), int(v.endOpIndex),
    )


def _platform(ffi: Any, p: Any) -> tuple[tuple[int, int, tuple[tuple[int, int], ...]], ...]:
    if p == ffi.NULL or int(p.version) != 1 or p.v1.hwDevices == ffi.NULL:
        return ()
    out = []
    for i in range(int(p.v1.numHwDevices)):
        d = p.v1.hwDevices[i].v1
        cores = ()
        if d.cores != ffi.NULL:
            cores = tuple((int(d.cores[j].v1.coreId), int(d.cores[j].v1.coreType)) for j in range(int(d.numCores)))
        out.append((int(d.deviceId), int(d.deviceType), cores))
    return tuple(out)


def _binary_info(ffi: Any, info: Any) -> SysBinaryInfo:
    version = int(info.version)
    if version in (1, 2):
        b = info.v12
        hw = bytes(ffi.buffer(b.hwInfoBlob, int(b.hwInfoBlobSize))) if b.hwInfoBlob != ffi.NULL else b""
        return SysBinaryInfo(
            version=version, backend_id=int(b.backendId), build_id=_str(ffi, b.buildId),
            core_api_version=_ver(b.coreApiVersion), backend_api_version=_ver(b.backendApiVersion),
            soc_version=_str(ffi, b.socVersion), context_blob_version=_ver(b.contextBlobVersion),
            context_blob_size=int(b.contextBlobSize),
            context_tensors=_tensors(ffi, b.contextTensors, int(b.numContextTensors)),
            graphs=tuple(_graph(ffi, b.graphs[i]) for i in range(int(b.numGraphs))) if b.graphs != ffi.NULL else (),
            hw_info_blob_version=_ver(b.hwInfoBlobVersion), hw_info_blob=hw,
            platform_devices=_platform(ffi, b.platformInfo) if version == 2 else (),
        )
    if version == 3:
        b = info.v3
        meta = b""
        if b.contextMetadata != ffi.NULL and b.contextMetadataSize:
            meta = bytes(ffi.buffer(b.contextMetadata, int(b.contextMetadataSize)))
        dsp = None
        # HTP context metadata: {u32 version (1); u32 dspArch}
        if len(meta) >= 8 and struct.unpack_from("<I", meta, 0)[0] == 1:
            dsp = struct.unpack_from("<I", meta, 4)[0]
        return SysBinaryInfo(
            version=3, backend_id=int(b.backendId), build_id=_str(ffi, b.buildId),
            core_api_version=_ver(b.coreApiVersion), backend_api_version=_ver(b.backendApiVersion),
            soc_version=_str(ffi, b.socVersion), context_blob_version=_ver(b.contextBlobVersion),
            context_blob_size=int(b.contextBlobSize),
            context_tensors=_tensors(ffi, b.contextTensors, int(b.numContextTensors)),
            graphs=tuple(_graph(ffi, b.graphs[i]) for i in range(int(b.numGraphs))) if b.graphs != ffi.NULL else (),
            platform_devices=_platform(ffi, b.platformInfo),
            context_metadata=meta, soc_model=int(b.socModel), dsp_arch=dsp,
        )
    raise BackendError(f"libQnnSystem returned a BinaryInfo of unknown version {version}")


class QnnSystem:
    """An open ``libQnnSystem.so`` and its ``SYSTEM_QTI_AISW`` function table."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = find_library(path)
        ffi = _get_ffi()
        try:
            self._lib = ffi.dlopen(str(self.path))
        except OSError as exc:
            raise BackendUnavailableError(f"cannot load {self.path}: {exc}") from None
        providers = ffi.new("QnnSystemInterface_t***")
        count = ffi.new("uint32_t*")
        err = _code(self._lib.QnnSystemInterface_getProviders(providers, count))
        if err or count[0] == 0:
            raise BackendUnavailableError(f"{self.path}: QnnSystemInterface_getProviders failed (error {err})")
        self._iface = providers[0][0][0]
        self.provider_name = _str(ffi, self._iface.providerName)
        self.api_version: Version = _ver(self._iface.systemApiVersion)

    def binary_info(self, data: bytes | bytearray | memoryview) -> SysBinaryInfo:
        """What ``systemContextGetBinaryInfo`` reports for a context binary."""
        ffi = _get_ffi()
        table = self._iface.table
        handle = ffi.new("void**")
        err = _code(table.systemContextCreate(handle))
        if err:
            raise BackendError(f"systemContextCreate failed (error {err})")
        try:
            buf = ffi.from_buffer(data)  # the library wants a writable pointer; it only reads
            info = ffi.new("QnnSystemContext_BinaryInfo_t**")
            size = ffi.new("uint64_t*")
            err = _code(table.systemContextGetBinaryInfo(handle[0], ffi.cast("void*", buf), len(buf), info, size))
            if err:
                raise BackendError(f"systemContextGetBinaryInfo rejected the binary (error {err})")
            return _binary_info(ffi, info[0])
        finally:
            table.systemContextFree(handle[0])


def _child(paths: list[str], library: str | None, conn: Any) -> None:
    try:
        system = QnnSystem(library)
        result: Any = [system.binary_info(Path(p).read_bytes()) for p in paths]
    except Exception as exc:  # reported to the parent, which re-raises it
        result = exc
    conn.send(result)
    conn.close()


def binary_infos_isolated(
    paths: Sequence[str | os.PathLike[str]],
    library: str | os.PathLike[str] | None = None,
    timeout: float = 120.0,
) -> list[SysBinaryInfo]:
    """:meth:`QnnSystem.binary_info` of each file, in one child process, so a
    crash inside the native library becomes :class:`BackendError` (and the
    library never shares a process with other QNN users, which it can't)."""
    find_library(library)  # fail early, in this process, if the library is missing
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    names = [str(p) for p in paths]
    proc = ctx.Process(target=_child, args=(names, None if library is None else str(library), send))
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            raise BackendError(f"libQnnSystem did not answer within {timeout} s")
        result = recv.recv()
    except EOFError:
        proc.join()
        raise BackendError(
            f"libQnnSystem crashed reading {', '.join(names)} (child exit code {proc.exitcode})"
        ) from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
    if isinstance(result, Exception):
        raise result
    return result


def binary_info_isolated(
    path: str | os.PathLike[str],
    library: str | os.PathLike[str] | None = None,
    timeout: float = 120.0,
) -> SysBinaryInfo:
    """:func:`binary_infos_isolated` for one file."""
    return binary_infos_isolated([path], library, timeout)[0]
