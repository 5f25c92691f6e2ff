"""Compose the graphs of a DLC into one HTP context and get its context binary.

The route, chosen by measurement (see the end of this docstring): ctxbin writes the
graphs, under the names the user chose, into one DLC v4 file
(:func:`ctxbin.formats.dlc.write`, weights equal by name and content stored
once), and the vendor's DLC loader composes them into an HTP context
(``QnnSystemDlc_composeGraphs`` of ``libQnnSystem.so``, the path the vendor's
context-binary generator takes). ctxbin creates that context itself, with HTP
weight sharing enabled and the device set to the requested SoC model and HTP
architecture, passes the HTP graph configs (fp16 precision for float graphs,
optimization level, VTCM), finalizes every graph and asks for the binary
(``contextGetBinarySize`` / ``contextGetBinary``). The vendor's loader maps the
DLC spelling of ops (``Neuron`` + ``operation``, ``Eltwise_Binary``, ``Pool`` +
``pool_type``) onto the QNN API op types itself, so every op the QNN IR
backend writes composes.

``QnnSystemDlc_composeGraphs`` takes the backend's ``QnnInterface_t`` *by
value*: the caller must pass exactly as many bytes as the library's own
declaration has, or the arguments after it land in the wrong stack slots.
The size is known per core API version (:data:`INTERFACE_SLOTS`, measured:
with one slot more or less the call crashes); other versions are refused.

Measured with QNN 2.51 (``onnxruntime-qnn`` 2.7) on two tiny FCN variants:
this route gives a binary of the same size as ONNX Runtime's shared-context
one (409,600 bytes; one ``WEIGHTS/0`` record of 290,816 bytes used by both
graphs) under the user's graph names. Composing op by op through
``QnnGraph_create`` / ``graphAddNode`` would need ctxbin to re-derive the DLC
to QNN API op mapping the vendor's loader already has, for no measured gain.
The loader logs ``unexpected GraphHtpSettings option 66`` for every graph
(harmless: composition succeeds).

Where the time goes (full FCN pair, :class:`ComposeResult` ``phases``):
``graphFinalize`` (the HTP preparation) is ~85% of it; finalizing the graphs
from two threads gave the same binary in the same time (the library
serializes them), so they are finalized in turn. Optimization level 3 took
~1.8x the preparation time of the default level 2 for a 0.15% smaller binary.

Native code runs only in a child process (:mod:`ctxbin.runtime.qnn_compose_worker`):
:func:`compose_dlc` is the caller's side and turns a crash into
:class:`~ctxbin.errors.BackendError`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BackendError, BackendUnavailableError, FormatError, InputError
from ..fileio import write_bytes_atomic
from . import worker
from .htp import unavailable_reason
from .qnn_api import QnnBackendLib
from .qnn_api import _get_ffi as _api_ffi
from .qnn_system import _code as _err_code
from .qnn_system import _get_ffi as _system_ffi
from .qnn_system import find_library

__all__ = [
    "DEFAULT_TIMEOUT",
    "INTERFACE_SLOTS",
    "ComposeOptions",
    "ComposeResult",
    "compose_dlc",
    "compose_native",
]

#: Function-table slots of ``QnnInterface_t`` per QNN core API (major, minor),
#: as compiled into the libraries that report that version.
INTERFACE_SLOTS = {(2, 40): 75}
#: Seconds one composition (load, compose, finalize, serialize) may take.
DEFAULT_TIMEOUT = 900.0

_HEADER_BYTES = 40  # QnnInterface_t before the table: backendId, providerName, apiVersion
# QnnSystemInterface table: slots after systemContextFree (see qnn_system's declaration)
_SYS_DLC_CREATE_FROM_FILE = 4
_SYS_DLC_COMPOSE = 6
_SYS_DLC_FREE = 8
_CONFIG_CUSTOM = 0  # QNN_{DEVICE,CONTEXT,GRAPH}_CONFIG_OPTION_CUSTOM
_DEVICE_SOC = 0  # QNN_HTP_DEVICE_CONFIG_OPTION_SOC
_DEVICE_ARCH = 1  # QNN_HTP_DEVICE_CONFIG_OPTION_ARCH
_CONTEXT_WEIGHT_SHARING = 1  # QNN_HTP_CONTEXT_CONFIG_OPTION_WEIGHT_SHARING_ENABLED
_GRAPH_OPTIMIZATION = 1  # QNN_HTP_GRAPH_CONFIG_OPTION_OPTIMIZATION
_GRAPH_PRECISION = 2  # QNN_HTP_GRAPH_CONFIG_OPTION_PRECISION
_GRAPH_VTCM_MB = 3  # QNN_HTP_GRAPH_CONFIG_OPTION_VTCM_SIZE_IN_MB
_OPT_FINALIZE_FLAG = 3  # QNN_HTP_GRAPH_OPTIMIZATION_TYPE_FINALIZE_OPTIMIZATION_FLAG
_PRECISION_FP16 = 1  # QNN_PRECISION_FLOAT16
_GRAPH_INFO_V3 = 3  # QNN_SYSTEM_CONTEXT_GRAPH_INFO_VERSION_3
_GRAPH_CONFIG_INFO_V1 = 1

# Written from the public QnnHtpDevice.h, QnnHtpContext.h, QnnHtpGraph.h,
# QnnSystemDlc.h and QnnContext.h/QnnGraph.h field order. Every config struct is
# {enum option; union}; the HTP device union holds 8-byte members in this
# SDK, so it starts at offset 8 (the library rejects a 4-byte-aligned one).
_CDEF = """
typedef struct { int32_t option; void* customConfig; } QnnCustomConfig_t;
typedef struct {
    int32_t option;
    union { uint32_t socModel; struct { uint32_t deviceId; int32_t arch; } arch; void* reserved; };
} QnnHtpDevice_CustomConfig_t;
typedef struct { int32_t option; union { uint8_t weightSharingEnabled; void* reserved; }; } QnnHtpContext_CustomConfig_t;
typedef struct {
    int32_t option;
    union { struct { int32_t type; float floatValue; } optimizationOption; int32_t precision;
            uint32_t vtcmSizeInMB; uint64_t numHvxThreads; void* reserved; };
} QnnHtpGraph_CustomConfig_t;
typedef struct { const char* graphName; const QnnCustomConfig_t** graphConfigs; uint32_t numConfigs; }
    QnnSystemDlc_GraphConfigInfoV1_t;
typedef struct { int32_t version; QnnSystemDlc_GraphConfigInfoV1_t v1; } QnnSystemDlc_GraphConfigInfo_t;

typedef Qnn_ErrorHandle_t (*DlcCreateFromFileFn)(void* logger, const char* path, void** dlc);
typedef Qnn_ErrorHandle_t (*DlcFreeFn)(void* dlc);
typedef Qnn_ErrorHandle_t (*DeviceCreateCfgFn)(void* logger, const QnnCustomConfig_t** config, void** device);
typedef Qnn_ErrorHandle_t (*ContextCreateFn)(void* backend, void* device, const QnnCustomConfig_t** config,
                                             void** context);
typedef Qnn_ErrorHandle_t (*ContextGetBinarySizeFn)(void* context, uint64_t* size);
typedef Qnn_ErrorHandle_t (*ContextGetBinaryFn)(void* context, void* buffer, uint64_t size, uint64_t* written);
typedef Qnn_ErrorHandle_t (*GraphFinalizeFn)(void* graph, void* profile, void* signal);
typedef Qnn_ErrorHandle_t (*GraphRetrieveAnyFn)(void* context, const char* name, void** graph);
"""

_COMPOSE_CDEF = """
typedef struct {{ uint32_t backendId; const char* providerName; Qnn_ApiVersion_t apiVersion; void* slots[{n}]; }}
    QnnInterfaceByValue_t;
typedef Qnn_ErrorHandle_t (*DlcComposeFn)(void* dlc, const QnnSystemDlc_GraphConfigInfo_t** configs,
    uint32_t numConfigs, void* backend, void* context, QnnInterfaceByValue_t iface, int32_t graphInfoVersion,
    QnnSystemContext_GraphInfo_t** graphs, uint32_t* numGraphs);
"""


@dataclass(frozen=True)
class ComposeOptions:
    """How the HTP context and its graphs are prepared."""

    soc_model: int
    htp_arch: int
    weight_sharing: bool = True
    fp16: bool = True  # float graphs run in fp16 on HTP (needs soc_model + htp_arch)
    # HTP graph optimization level (1-3); 2 is the backend's default (what
    # ONNX Runtime uses): passing it builds the same graph as passing none
    optimization: int = 2
    vtcm_mb: int = 0  # 0: the device maximum

    def check(self) -> None:
        for name in ("soc_model", "htp_arch", "optimization", "vtcm_mb"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 32:
                raise InputError(f"{name} must be a non-negative integer, got {value!r}")
        if self.soc_model == 0 or self.htp_arch == 0:
            raise InputError("soc_model and htp_arch must be given (e.g. soc_model=60, htp_arch=75)")
        if not 1 <= self.optimization <= 3:
            raise InputError(f"optimization must be 1, 2 or 3, got {self.optimization}")


@dataclass(frozen=True)
class ComposeResult:
    """A context binary written by :func:`compose_dlc`."""

    path: str
    size: int
    graphs: tuple[str, ...]
    seconds: float  # the child's compose + finalize + serialize time
    #: (phase, seconds) in the child, in order: ``load`` (QNN libraries, DLC,
    #: backend/device/context), ``compose``, ``finalize <graph>`` per graph,
    #: ``binary`` (context binary fetched), ``write`` (written to the file)
    phases: tuple[tuple[str, float], ...] = ()


@functools.cache
def _get_ffi(slots: int) -> Any:
    import cffi

    ffi = cffi.FFI()
    ffi.include(_api_ffi())
    ffi.cdef(_CDEF + _COMPOSE_CDEF.format(n=slots))
    return ffi


def _configs(ffi: Any, structs: Sequence[Any], keep: list[Any]) -> Any:
    """A NULL-terminated ``const QnnXxx_Config_t*[]`` of custom configs."""
    wrapped = [ffi.new("QnnCustomConfig_t*", {"option": _CONFIG_CUSTOM, "customConfig": s}) for s in structs]
    arr = ffi.new("const QnnCustomConfig_t*[]", wrapped + [ffi.NULL])
    keep += [*structs, *wrapped, arr]
    return arr


def _graph_configs(ffi: Any, opts: ComposeOptions, keep: list[Any]) -> tuple[Any, int]:
    structs = []
    opt = ffi.new("QnnHtpGraph_CustomConfig_t*")
    opt.option = _GRAPH_OPTIMIZATION
    opt.optimizationOption.type = _OPT_FINALIZE_FLAG
    opt.optimizationOption.floatValue = float(opts.optimization)
    structs.append(opt)
    if opts.fp16:
        p = ffi.new("QnnHtpGraph_CustomConfig_t*")
        p.option = _GRAPH_PRECISION
        p.precision = _PRECISION_FP16
        structs.append(p)
    if opts.vtcm_mb:
        v = ffi.new("QnnHtpGraph_CustomConfig_t*")
        v.option = _GRAPH_VTCM_MB
        v.vtcmSizeInMB = opts.vtcm_mb
        structs.append(v)
    return _configs(ffi, structs, keep), len(structs)


def compose_native(
    dlc_path: str,
    out_path: str,
    graphs: Sequence[str],
    opts: ComposeOptions,
    *,
    library: str | None = None,
    system_library: str | None = None,
) -> dict[str, Any]:
    """Compose ``graphs`` of the DLC at ``dlc_path`` into one HTP context and
    write its binary to ``out_path``. Loads native code that may crash: call it
    in a child process (:func:`compose_dlc` does). Returns ``{"size", "graphs",
    "seconds", "phases"}``."""
    started = time.perf_counter()
    lib = QnnBackendLib(library)
    slots = INTERFACE_SLOTS.get(lib.core_api_version[:2])
    if slots is None:
        known = ", ".join(f"{a}.{b}" for a, b in INTERFACE_SLOTS)
        raise BackendUnavailableError(
            f"{lib.path} implements QNN core API {'.'.join(map(str, lib.core_api_version))}; composing "
            f"through libQnnSystem is verified for core API {known} only"
        )
    ffi = _get_ffi(slots)
    t = lib.table
    sys_ffi = _system_ffi()  # the ffi that declares QnnSystemInterface_getProviders
    sys_lib = sys_ffi.dlopen(str(find_library(system_library)))
    providers = sys_ffi.new("QnnSystemInterface_t***")
    count = sys_ffi.new("uint32_t*")
    if _err_code(sys_lib.QnnSystemInterface_getProviders(providers, count)) or count[0] == 0:
        raise BackendUnavailableError("libQnnSystem: QnnSystemInterface_getProviders failed")
    rest = providers[0][0][0].table.rest
    if any(rest[i] == ffi.NULL for i in (_SYS_DLC_CREATE_FROM_FILE, _SYS_DLC_COMPOSE, _SYS_DLC_FREE)):
        raise BackendUnavailableError("this libQnnSystem has no DLC composition entry points")
    create_dlc = ffi.cast("DlcCreateFromFileFn", rest[_SYS_DLC_CREATE_FROM_FILE])
    compose = ffi.cast("DlcComposeFn", rest[_SYS_DLC_COMPOSE])
    free_dlc = ffi.cast("DlcFreeFn", rest[_SYS_DLC_FREE])

    keep: list[Any] = []
    dlc = ffi.new("void**")
    lib.check(create_dlc(ffi.NULL, dlc_path.encode("utf-8"), dlc), "QnnSystemDlc_createFromFile", dlc_path)
    backend = ffi.new("void**")
    device = ffi.new("void**")
    context = ffi.new("void**")
    try:
        lib.check(t.backendCreate(ffi.NULL, ffi.NULL, backend), "backendCreate")
        try:
            soc = ffi.new("QnnHtpDevice_CustomConfig_t*")
            soc.option = _DEVICE_SOC
            soc.socModel = opts.soc_model
            arch = ffi.new("QnnHtpDevice_CustomConfig_t*")
            arch.option = _DEVICE_ARCH
            arch.arch.deviceId = 0
            arch.arch.arch = opts.htp_arch
            dev_cfg = _configs(ffi, [soc, arch], keep)
            create_device = ffi.cast("DeviceCreateCfgFn", t.deviceCreate)
            lib.check(create_device(ffi.NULL, dev_cfg, device), "deviceCreate",
                      f"soc_model={opts.soc_model} htp_arch=v{opts.htp_arch}")
            try:
                ctx_structs = []
                if opts.weight_sharing:
                    ws = ffi.new("QnnHtpContext_CustomConfig_t*")
                    ws.option = _CONTEXT_WEIGHT_SHARING
                    ws.weightSharingEnabled = 1
                    ctx_structs.append(ws)
                ctx_cfg = _configs(ffi, ctx_structs, keep)
                create_context = ffi.cast("ContextCreateFn", t.contextCreate)
                lib.check(create_context(backend[0], device[0], ctx_cfg, context), "contextCreate")
                try:
                    loaded = time.perf_counter() - started
                    done = _compose_into(ffi, lib, compose, dlc[0], backend[0], context[0], graphs, opts, out_path)
                    return {**done, "phases": [["load", loaded], *done["phases"]]}
                finally:
                    t.contextFree(context[0], ffi.NULL)
            finally:
                t.deviceFree(device[0])
        finally:
            t.backendFree(backend[0])
    finally:
        free_dlc(dlc[0])


def _compose_into(
    ffi: Any, lib: QnnBackendLib, compose: Any, dlc: Any, backend: Any, context: Any,
    graphs: Sequence[str], opts: ComposeOptions, out_path: str,
) -> dict[str, Any]:
    t = lib.table
    keep: list[Any] = []
    infos = []
    for name in graphs:
        cfg, n = _graph_configs(ffi, opts, keep)
        gname = ffi.new("char[]", name.encode("utf-8"))
        info = ffi.new("QnnSystemDlc_GraphConfigInfo_t*")
        info.version = _GRAPH_CONFIG_INFO_V1
        info.v1.graphName = gname
        info.v1.graphConfigs = cfg
        info.v1.numConfigs = n
        keep += [gname, info]
        infos.append(info)
    info_list = ffi.new("const QnnSystemDlc_GraphConfigInfo_t*[]", infos)
    # the backend's interface, byte for byte, passed by value
    iface = ffi.new("QnnInterfaceByValue_t*")
    start = int(ffi.cast("uintptr_t", ffi.addressof(t))) - _HEADER_BYTES
    ffi.memmove(iface, ffi.cast("char*", start), ffi.sizeof("QnnInterfaceByValue_t"))
    out_graphs = ffi.new("QnnSystemContext_GraphInfo_t**")
    n_out = ffi.new("uint32_t*")
    phases: list[list[Any]] = []
    t0 = lap = time.perf_counter()

    def mark(phase: str) -> None:
        nonlocal lap
        now = time.perf_counter()
        phases.append([phase, now - lap])
        lap = now

    err = compose(dlc, info_list, len(infos), backend, context, iface[0], _GRAPH_INFO_V3, out_graphs, n_out)
    lib.check(err, "QnnSystemDlc_composeGraphs")
    made = [ffi.string(out_graphs[0][i].v.graphName).decode("utf-8", "replace") for i in range(n_out[0])]
    if sorted(made) != sorted(graphs):
        raise BackendError(f"the DLC composed into graphs {made}, expected {list(graphs)}")
    mark("compose")
    retrieve = ffi.cast("GraphRetrieveAnyFn", t.graphRetrieve)
    finalize = ffi.cast("GraphFinalizeFn", t.graphFinalize)
    for name in graphs:
        handle = ffi.new("void**")
        lib.check(retrieve(context, name.encode("utf-8"), handle), "graphRetrieve", repr(name))
        lib.check(finalize(handle[0], ffi.NULL, ffi.NULL), "graphFinalize", repr(name))
        mark(f"finalize {name}")
    size = ffi.new("uint64_t*")
    lib.check(ffi.cast("ContextGetBinarySizeFn", t.contextGetBinarySize)(context, size), "contextGetBinarySize")
    buf = ffi.new("char[]", int(size[0]))
    written = ffi.new("uint64_t*")
    lib.check(ffi.cast("ContextGetBinaryFn", t.contextGetBinary)(context, buf, size[0], written), "contextGetBinary")
    seconds = time.perf_counter() - t0
    mark("binary")
    write_bytes_atomic(out_path, ffi.buffer(buf, int(written[0])))
    mark("write")
    return {"size": int(written[0]), "graphs": made, "seconds": seconds, "phases": phases}


def compose_dlc(
    dlc_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    graphs: Sequence[str],
    options: ComposeOptions,
    library: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ComposeResult:
    """Compose ``graphs`` (names in the DLC at ``dlc_path``) into one HTP
    context binary at ``out_path``, in a child process.

    Raises :class:`BackendUnavailableError` when the QNN libraries are missing,
    :class:`BackendError` when they refuse the graphs or crash."""
    options.check()
    if not graphs:
        raise InputError("no graphs to compose")
    why = unavailable_reason(library)
    if why:
        raise BackendUnavailableError(f"cannot compile for HTP: {why}")
    find_library()  # libQnnSystem too, before any child starts
    out = os.path.abspath(os.fspath(out_path))
    request = {
        "dlc": os.path.abspath(os.fspath(dlc_path)),
        "out": out,
        "graphs": list(graphs),
        "options": dataclasses.asdict(options),
        "library": None if library is None else os.fspath(library),
    }
    done = worker.call("ctxbin.runtime.qnn_compose_worker", request, timeout=timeout,
                       what=f"composing {', '.join(graphs)} for HTP")
    if done.result is None:
        said = worker.library_says(done.output)
        raise BackendError(
            f"the QNN libraries crashed composing graph(s) {', '.join(map(repr, graphs))} "
            f"(the worker process {done.death()})" + (f"; the library said: {said}" if said else "")
        )
    done.raise_failure({c.__name__: c for c in (BackendError, BackendUnavailableError, FormatError, InputError)})
    result = done.result
    phases = tuple((str(k), float(v)) for k, v in result.get("phases", ()))
    return ComposeResult(out, int(result["size"]), tuple(result["graphs"]), float(result["seconds"]), phases)
