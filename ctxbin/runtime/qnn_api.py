"""The QNN core C API of a backend library (``libQnnHtp.so``), through cffi.

ABI mode: ``QnnInterface_getProviders`` gives the backend's function table
(``QnnInterface_t``); every call goes through it. The table's member order is
the public ``QnnInterface.h`` one, declared up to ``errorGetMessage``, the last
slot ctxbin calls (the library owns the table; ctxbin never allocates one, so
later slots can be left out). The shared QNN types
(``Qnn_Tensor_t``, quantization parameters, versions) are the declarations of
:mod:`ctxbin.runtime.qnn_system`, included, not repeated.

This module loads native code that can crash on a bad binary: ctxbin only uses
it inside the child process of :mod:`ctxbin.runtime.htp_worker`.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..errors import BackendError, BackendUnavailableError
from ..ir import QuantEncoding, QuantKind
from . import qnn_system
from .qnn_system import _code as _err_code

if TYPE_CHECKING:  # pragma: no cover
    from ..formats.qnn import IOTensor

__all__ = [
    "HTP_LIBRARY",
    "BACKEND_ID_HTP",
    "CONTEXT_CONFIG_ENABLE_GRAPHS",
    "platform_problem",
    "find_library",
    "QnnBackendLib",
]

HTP_LIBRARY = "libQnnHtp.so"
BACKEND_ID_HTP = 6  # QNN_BACKEND_ID_HTP
CONTEXT_CONFIG_ENABLE_GRAPHS = 5  # QNN_CONTEXT_CONFIG_ENABLE_GRAPHS
_DEFINED = 1  # QNN_DEFINITION_DEFINED
_UNDEFINED = 0x7FFFFFFF
_MEM_RAW = 0  # QNN_TENSORMEMTYPE_RAW

# Function-table slots, in QnnInterface.h order (QnnInterface_ImplementationV2_x_t).
# Unused slots are plain pointers; each name is kept so the order can be checked
# against the header by eye.
_CDEF = """
typedef struct { Qnn_Version_t coreApiVersion; Qnn_Version_t backendApiVersion; } Qnn_ApiVersion_t;
typedef struct {
    int32_t option;
    union { void* customConfig; const char* const* enableGraphs; uint64_t memoryLimitHint; };
} QnnContext_Config_t;

typedef Qnn_ErrorHandle_t (*BackendCreateFn)(void* logger, const void** config, void** backend);
typedef Qnn_ErrorHandle_t (*BackendGetApiVersionFn)(Qnn_ApiVersion_t* version);
typedef Qnn_ErrorHandle_t (*BackendGetBuildIdFn)(const char** id);
typedef Qnn_ErrorHandle_t (*HandleFreeFn)(void* handle);
typedef Qnn_ErrorHandle_t (*ContextCreateFromBinaryFn)(void* backend, void* device,
    const QnnContext_Config_t** config, const void* buffer, uint64_t size, void** context, void* profile);
typedef Qnn_ErrorHandle_t (*ContextFreeFn)(void* context, void* profile);
typedef Qnn_ErrorHandle_t (*GraphRetrieveFn)(void* context, const char* name, void** graph);
typedef Qnn_ErrorHandle_t (*GraphExecuteFn)(void* graph, const Qnn_Tensor_t* inputs, uint32_t numInputs,
    Qnn_Tensor_t* outputs, uint32_t numOutputs, void* profile, void* signal);
typedef Qnn_ErrorHandle_t (*DeviceCreateFn)(void* logger, const void** config, void** device);
typedef Qnn_ErrorHandle_t (*ErrorGetMessageFn)(Qnn_ErrorHandle_t error, const char** message);

typedef struct {
    void* propertyHasCapability;
    BackendCreateFn backendCreate;
    void* backendSetConfig;
    BackendGetApiVersionFn backendGetApiVersion;
    BackendGetBuildIdFn backendGetBuildId;
    void* backendRegisterOpPackage;
    void* backendGetSupportedOperations;
    void* backendValidateOpConfig;
    HandleFreeFn backendFree;
    void* contextCreate;
    void* contextSetConfig;
    void* contextGetBinarySize;
    void* contextGetBinary;
    ContextCreateFromBinaryFn contextCreateFromBinary;
    ContextFreeFn contextFree;
    void* graphCreate;
    void* graphCreateSubgraph;
    void* graphSetConfig;
    void* graphAddNode;
    void* graphFinalize;
    GraphRetrieveFn graphRetrieve;
    GraphExecuteFn graphExecute;
    void* graphExecuteAsync;
    void* tensorCreateContextTensor;
    void* tensorCreateGraphTensor;
    void* logCreate;
    void* logSetLogLevel;
    void* logFree;
    void* profileCreate;
    void* profileSetConfig;
    void* profileGetEvents;
    void* profileGetSubEvents;
    void* profileGetEventData;
    void* profileGetExtendedEventData;
    void* profileFree;
    void* memRegister;
    void* memDeRegister;
    void* deviceGetPlatformInfo;
    void* deviceFreePlatformInfo;
    void* deviceGetInfrastructure;
    DeviceCreateFn deviceCreate;
    void* deviceSetConfig;
    void* deviceGetInfo;
    HandleFreeFn deviceFree;
    void* signalCreate;
    void* signalSetConfig;
    void* signalTrigger;
    void* signalFree;
    ErrorGetMessageFn errorGetMessage;
} QnnInterfaceTable_t;

typedef struct {
    uint32_t backendId; const char* providerName; Qnn_ApiVersion_t apiVersion;
    QnnInterfaceTable_t table;
} QnnInterface_t;
Qnn_ErrorHandle_t QnnInterface_getProviders(const QnnInterface_t*** providers, uint32_t* numProviders);
"""


@functools.lru_cache(maxsize=None)
def _get_ffi() -> Any:
    """The cffi declarations (parsed once: an immutable description)."""
    import cffi

    from .qnn_system import _get_ffi as system_ffi

    ffi = cffi.FFI()
    ffi.include(system_ffi())
    ffi.cdef(_CDEF)
    return ffi


def platform_problem() -> str:
    """Why QNN backend libraries cannot run on this machine ("" when they can).

    The libraries ctxbin can find (QNN SDK x86_64 build, ``onnxruntime-qnn``)
    are x86_64 Linux builds; HTP graphs then run in the vendor's x86 simulation.
    """
    machine = platform.machine().lower()
    if not sys.platform.startswith("linux") or machine not in ("x86_64", "amd64"):
        return f"the QNN HTP libraries ctxbin uses run on x86_64 Linux only; this is {sys.platform} {machine}"
    return ""


def find_library(name: str = HTP_LIBRARY, path: str | os.PathLike[str] | None = None) -> Path:
    """Where QNN library ``name`` is (search order: see :func:`qnn_system.find_library`)."""
    return qnn_system.find_library(path, name=name)


class QnnBackendLib:
    """An open ``libQnnHtp.so`` and the function table of its HTP provider."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = find_library(HTP_LIBRARY, path)
        self.ffi = ffi = _get_ffi()
        try:
            self._lib = ffi.dlopen(str(self.path))
        except OSError as exc:
            raise BackendUnavailableError(f"cannot load {self.path}: {exc}") from None
        providers = ffi.new("QnnInterface_t***")
        count = ffi.new("uint32_t*")
        err = _err_code(self._lib.QnnInterface_getProviders(providers, count))
        if err or count[0] == 0:
            raise BackendUnavailableError(f"{self.path}: QnnInterface_getProviders failed (error {err})")
        found = [providers[0][i] for i in range(count[0])]
        match = [p for p in found if int(p.backendId) == BACKEND_ID_HTP]
        if not match:
            ids = ", ".join(str(int(p.backendId)) for p in found)
            raise BackendUnavailableError(f"{self.path} provides backend id(s) {ids}, not HTP ({BACKEND_ID_HTP})")
        iface = match[0]
        core = iface.apiVersion.coreApiVersion
        if int(core.major) != 2:
            # the table layout above is the one of core API major version 2
            raise BackendUnavailableError(f"{self.path} implements QNN core API {int(core.major)}.x; ctxbin knows 2.x")
        self.provider_name = self.string(iface.providerName)
        self.core_api_version = (int(core.major), int(core.minor), int(core.patch))
        b = iface.apiVersion.backendApiVersion
        self.backend_api_version = (int(b.major), int(b.minor), int(b.patch))
        self.table = iface.table

    def string(self, p: Any) -> str:
        return "" if p == self.ffi.NULL else self.ffi.string(p).decode("utf-8", "replace")

    def build_id(self) -> str:
        out = self.ffi.new("const char**")
        self.check(self.table.backendGetBuildId(out), "backendGetBuildId")
        return self.string(out[0])

    def message(self, err: int) -> str:
        """The library's own words for an error handle, when it has some."""
        if self.table.errorGetMessage == self.ffi.NULL:
            return ""
        out = self.ffi.new("const char**")
        if _err_code(self.table.errorGetMessage(err, out)) or out[0] == self.ffi.NULL:
            return ""
        return self.string(out[0])

    def check(self, err: int, call: str, what: str = "") -> None:
        code = _err_code(err)
        if code:
            text = self.message(err)
            raise BackendError(
                f"{call} failed{' for ' + what if what else ''}: QNN error {code}" + (f" ({text})" if text else "")
            )

    @contextmanager
    def session(self, binary: Any, graphs: Sequence[str]) -> Iterator[Any]:
        """Backend, device and a context made from ``binary`` with only
        ``graphs`` enabled; yields the context handle and frees everything
        (in reverse order) on the way out, errors included."""
        ffi, t = self.ffi, self.table
        backend = ffi.new("void**")
        device = ffi.new("void**")
        context = ffi.new("void**")
        self.check(t.backendCreate(ffi.NULL, ffi.NULL, backend), "backendCreate")
        try:
            if t.deviceCreate != ffi.NULL:
                self.check(t.deviceCreate(ffi.NULL, ffi.NULL, device), "deviceCreate")
            try:
                names = [ffi.new("char[]", n.encode("utf-8")) for n in graphs]
                name_list = ffi.new("const char*[]", names + [ffi.NULL])
                config = ffi.new("QnnContext_Config_t*")
                config.option = CONTEXT_CONFIG_ENABLE_GRAPHS
                config.enableGraphs = name_list
                configs = ffi.new("const QnnContext_Config_t*[]", [config, ffi.NULL])
                buf = ffi.from_buffer(binary)
                try:
                    err = t.contextCreateFromBinary(backend[0], device[0], configs, buf, len(buf), context, ffi.NULL)
                finally:
                    ffi.release(buf)  # the caller may close its buffer, even while an error propagates
                self.check(err, "contextCreateFromBinary", f"graph(s) {', '.join(map(repr, graphs))}")
                try:
                    yield context[0]
                finally:
                    t.contextFree(context[0], ffi.NULL)
            finally:
                if device[0] != ffi.NULL:
                    t.deviceFree(device[0])
        finally:
            t.backendFree(backend[0])

    def retrieve(self, context: Any, name: str) -> Any:
        graph = self.ffi.new("void**")
        self.check(self.table.graphRetrieve(context, name.encode("utf-8"), graph), "graphRetrieve", repr(name))
        return graph[0]

    def tensors(self, specs: Sequence[IOTensor], arrays: Sequence[np.ndarray]) -> tuple[Any, list[Any]]:
        """A ``Qnn_Tensor_t[]`` (version 1) describing ``specs`` over the client
        buffers ``arrays`` (C-contiguous, already of the tensor's storage type),
        and the cffi objects that must stay alive while it is used."""
        ffi = self.ffi
        out = ffi.new("Qnn_Tensor_t[]", len(specs))
        keep: list[Any] = []
        for i, (spec, arr) in enumerate(zip(specs, arrays)):
            out[i].version = 1  # v1 is the prefix of the declared v2
            v = out[i].v2
            name = ffi.new("char[]", spec.name.encode("utf-8"))
            dims = ffi.new("uint32_t[]", [int(d) for d in spec.shape])
            data = ffi.from_buffer(arr, require_writable=True)
            keep += [name, dims, data]
            v.id = spec.id
            v.name = name
            v.type = int(spec.kind)
            v.dataFormat = spec.data_format
            v.dataType = int(spec.dtype)
            _set_encoding(v.quantizeParams, spec.encoding)
            v.rank = len(spec.shape)
            v.dimensions = dims
            v.memType = _MEM_RAW
            v.clientBuf.data = data
            v.clientBuf.dataSize = arr.nbytes
        return out, keep

    def execute(self, graph: Any, inputs: Any, n_inputs: int, outputs: Any, n_outputs: int, name: str) -> None:
        err = self.table.graphExecute(graph, inputs, n_inputs, outputs, n_outputs, self.ffi.NULL, self.ffi.NULL)
        self.check(err, "graphExecute", repr(name))


def _set_encoding(q: Any, enc: QuantEncoding | None) -> None:
    """Fill a ``Qnn_QuantizeParams_t`` from a per-tensor encoding (all graph I/O seen so far)."""
    if enc is None:
        q.encodingDefinition = _UNDEFINED
        q.quantizationEncoding = _UNDEFINED
        return
    if enc.kind != QuantKind.SCALE_OFFSET or len(enc.scales) != 1:
        raise BackendError(f"graph I/O with a {enc.kind.name} encoding is not supported yet")
    q.encodingDefinition = _DEFINED
    q.quantizationEncoding = int(QuantKind.SCALE_OFFSET)
    q.scaleOffsetEncoding.scale = enc.scales[0]
    q.scaleOffsetEncoding.offset = enc.offsets[0]
