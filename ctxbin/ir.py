"""ctxbin's in-memory model: containers of named graphs over shared weight blobs.

Metadata objects are frozen dataclasses; weights are :class:`~ctxbin.weights.Blob`
references into a file mapping or an in-memory buffer, so reading a container
never copies weights and two graphs share a weight by sharing a ``Blob``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypeVar, Union, overload

import numpy as np

from .errors import GraphNotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from .runtime.session import RunResult
    from .weights import Blob

__all__ = [
    "DType",
    "QuantKind",
    "QuantEncoding",
    "TensorKind",
    "Tensor",
    "Node",
    "LazyTuple",
    "LazyTable",
    "Graph",
    "Target",
    "Container",
    "Dim",
    "AttrValue",
]

#: A dimension: a size, a symbolic name (kept until bound), or None (unknown).
Dim = Union[int, str, None]

#: Node attribute values: scalars, strings, bytes, lists of those, or arrays.
AttrValue = Union[int, float, str, bytes, tuple, np.ndarray]

T = TypeVar("T")


class DType(enum.IntEnum):
    """Element types, coded as QNN's ``Qnn_DataType_t`` (a superset of what we need).

    High byte = class (int, uint, float, sfixed, ufixed, bool, string),
    low byte = bit width. Fixed-point types are quantized integers whose real
    value follows the tensor's :class:`QuantEncoding`.
    """

    INT8 = 0x0008
    INT16 = 0x0016
    INT32 = 0x0032
    INT64 = 0x0064
    UINT8 = 0x0108
    UINT16 = 0x0116
    UINT32 = 0x0132
    UINT64 = 0x0164
    FLOAT16 = 0x0216
    FLOAT32 = 0x0232
    FLOAT64 = 0x0264
    SFIXED4 = 0x0304
    SFIXED8 = 0x0308
    SFIXED16 = 0x0316
    SFIXED32 = 0x0332
    UFIXED4 = 0x0404
    UFIXED8 = 0x0408
    UFIXED16 = 0x0416
    UFIXED32 = 0x0432
    BOOL8 = 0x0508
    STRING = 0x0608
    UNDEFINED = 0x7FFFFFFF

    @property
    def is_quantized(self) -> bool:
        return (self.value >> 8) in (3, 4)

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype that stores one element (fixed-point → its integer)."""
        try:
            return np.dtype(_NUMPY_OF[self])
        except KeyError:
            raise TypeError(f"{self.name} has no numpy storage type") from None

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @classmethod
    def from_numpy(cls, dtype: Any) -> "DType":
        dt = np.dtype(dtype)
        try:
            return _DTYPE_OF_NUMPY[dt.str.lstrip("<>|=")]
        except KeyError:
            raise TypeError(f"numpy dtype {dt} has no ctxbin equivalent") from None


_NUMPY_OF = {
    DType.INT8: "i1", DType.INT16: "<i2", DType.INT32: "<i4", DType.INT64: "<i8",
    DType.UINT8: "u1", DType.UINT16: "<u2", DType.UINT32: "<u4", DType.UINT64: "<u8",
    DType.FLOAT16: "<f2", DType.FLOAT32: "<f4", DType.FLOAT64: "<f8",
    DType.SFIXED4: "i1", DType.SFIXED8: "i1", DType.SFIXED16: "<i2", DType.SFIXED32: "<i4",
    DType.UFIXED4: "u1", DType.UFIXED8: "u1", DType.UFIXED16: "<u2", DType.UFIXED32: "<u4",
    DType.BOOL8: "?",
}
_DTYPE_OF_NUMPY = {
    "i1": DType.INT8, "i2": DType.INT16, "i4": DType.INT32, "i8": DType.INT64,
    "u1": DType.UINT8, "u2": DType.UINT16, "u4": DType.UINT32, "u8": DType.UINT64,
    "f2": DType.FLOAT16, "f4": DType.FLOAT32, "f8": DType.FLOAT64, "b1": DType.BOOL8,
}


class QuantKind(enum.IntEnum):
    """Quantization encodings, coded as QNN's ``Qnn_QuantizationEncoding_t``."""

    NONE = 0x7FFFFFFF
    SCALE_OFFSET = 0
    AXIS_SCALE_OFFSET = 1
    BW_SCALE_OFFSET = 2
    BW_AXIS_SCALE_OFFSET = 3
    BLOCK = 4
    BLOCKWISE_EXPANSION = 5
    VECTOR = 6
    BW_FLOAT_BLOCK = 11  # QAIRT's value; float scale/offset per block


@dataclass(frozen=True)
class QuantEncoding:
    """How quantized integers map to reals, in QNN's convention.

    ``real = scale * (q + offset)`` (offset is usually <= 0; ONNX's zero point
    is ``-offset``). Per-tensor encodings have one scale/offset; per-axis ones
    have one per channel along ``axis``; block encodings add ``block_size``
    and, for LPBQ (``BLOCKWISE_EXPANSION``), integer per-block scales.
    """

    kind: QuantKind
    scales: tuple[float, ...] = ()
    offsets: tuple[int, ...] = ()
    axis: int | None = None
    bitwidth: int = 8
    is_symmetric: bool = False
    #: block encodings: the block's extent along each dimension of the tensor
    #: (1 along ``axis``; LPBQ blocks span whole dimensions other than ``axis``
    #: and the blocked one)
    block_size: tuple[int, ...] = ()
    #: LPBQ: the integer per-block scales, channel-major (all blocks of channel
    #: 0 along ``axis``, then channel 1, ...; blocks in C order of the block grid)
    block_scales: tuple[int, ...] = ()
    block_scale_bitwidth: int = 0

    @property
    def value_bits(self) -> int:
        """Bits of each quantized value: LPBQ (``BLOCKWISE_EXPANSION``) weights
        are expanded to ``bitwidth`` by their ``block_scale_bitwidth``-bit block
        scales, so they hold the difference (QNN: 4-bit weights, 4-bit scales, 8)."""
        if self.kind == QuantKind.BLOCKWISE_EXPANSION:
            return self.bitwidth - self.block_scale_bitwidth
        return self.bitwidth

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Real float32 values of quantized integers ``q`` (per-tensor, per-axis or LPBQ).

        Values narrower than their storage (4-bit weights in bytes) are read
        from their low ``value_bits`` bits, sign-extended when the storage is
        signed: QNN stores int4 weights one per byte, high nibble zero."""
        q = _narrow(np.asarray(q), self.value_bits)
        scales = np.asarray(self.scales, np.float32)
        offsets = np.asarray(self.offsets, np.float32)
        if self.axis is not None and scales.size > 1:
            shape = [1] * q.ndim
            shape[self.axis] = scales.size
            scales = scales.reshape(shape)
            offsets = offsets.reshape(shape)
        if self.kind == QuantKind.BLOCKWISE_EXPANSION:
            scales = scales * self._block_grid(q.shape)
        return ((q.astype(np.float32) + offsets) * scales).astype(np.float32)

    def _block_grid(self, shape: tuple[int, ...]) -> np.ndarray:
        """The per-block integer scales spread over a tensor of ``shape``."""
        if self.axis is None or len(self.block_size) != len(shape) or any(
                b <= 0 or d % b for d, b in zip(shape, self.block_size)):
            raise ValueError(f"block size {self.block_size} does not tile shape {shape}")
        grid = [d // b for d, b in zip(shape, self.block_size)]
        if grid[self.axis] != len(self.scales) or int(np.prod(grid)) != len(self.block_scales):
            raise ValueError(f"{len(self.block_scales)} block scales for a {grid} block grid")
        order = [self.axis] + [d for d in range(len(shape)) if d != self.axis]
        blocks = np.asarray(self.block_scales, np.float32).reshape([grid[d] for d in order])
        blocks = np.moveaxis(blocks, 0, self.axis)
        for d, b in enumerate(self.block_size):
            blocks = np.repeat(blocks, b, axis=d)
        return blocks

    def quantize(self, x: np.ndarray, dtype: "DType") -> np.ndarray:
        """Nearest quantized integers of real values ``x``, saturated to ``dtype``."""
        store = dtype.numpy
        info = np.iinfo(store)
        bits = self.bitwidth or info.bits
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if info.min < 0 else (0, (1 << bits) - 1)
        scales = np.asarray(self.scales, np.float32)
        offsets = np.asarray(self.offsets, np.float32)
        x = np.asarray(x, np.float32)
        if self.axis is not None and scales.size > 1:
            shape = [1] * x.ndim
            shape[self.axis] = scales.size
            scales = scales.reshape(shape)
            offsets = offsets.reshape(shape)
        q = np.rint(x / scales) - offsets
        return np.clip(q, lo, hi).astype(store)


def _narrow(q: np.ndarray, bits: int) -> np.ndarray:
    """Integers ``q`` reduced to their low ``bits`` bits (sign-extended for a
    signed storage type); values already in range are unchanged."""
    if q.dtype.kind not in "iu" or not 0 < bits < 8 * q.dtype.itemsize:
        return q
    low = q.astype(np.int64) & ((1 << bits) - 1)
    return low - ((low >> (bits - 1)) << bits) if q.dtype.kind == "i" else low


class TensorKind(enum.IntEnum):
    """Role of a tensor, coded as QNN's ``Qnn_TensorType_t``."""

    INPUT = 0  # APP_WRITE
    OUTPUT = 1  # APP_READ
    APP_READWRITE = 2
    NATIVE = 3  # intermediate activation
    STATIC = 4  # weights / constants
    NULL = 5


@dataclass(frozen=True, eq=False)
class Tensor:
    """A named tensor: element type, shape, optional encoding and optional data.

    ``data`` is set for static tensors (weights) and refers to a shared blob;
    activations and graph I/O have ``data=None``.
    """

    name: str
    dtype: DType
    shape: tuple[Dim, ...]
    kind: TensorKind = TensorKind.NATIVE
    encoding: QuantEncoding | None = None
    data: "Blob | None" = None

    @property
    def is_static(self) -> bool:
        return self.data is not None

    @property
    def nbytes(self) -> int:
        return 0 if self.data is None else self.data.nbytes

    @property
    def is_symbolic(self) -> bool:
        return any(not isinstance(d, int) for d in self.shape)

    def numpy(self) -> np.ndarray:
        """The tensor's data as a read-only numpy view (no copy)."""
        if self.data is None:
            raise ValueError(f"tensor {self.name!r} has no data (it is an activation)")
        return self.data.array(self.dtype.numpy, tuple(int(d) for d in self.shape))  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tensor):
            return NotImplemented
        return (
            self.name == other.name
            and self.dtype == other.dtype
            and self.shape == other.shape
            and self.kind == other.kind
            and self.encoding == other.encoding
            and (self.data is None) == (other.data is None)
            and (self.data is None or self.data.equals(other.data))  # type: ignore[arg-type]
        )

    __hash__ = None  # type: ignore[assignment]


def _attr_equal(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(map(_attr_equal, a, b))
    return type(a) is type(b) and a == b  # 1 and 1.0 are different attributes


@dataclass(frozen=True, eq=False)
class Node:
    """One operation. ``namespace`` is ``"onnx"`` (ONNX semantics, ``domain``
    is the ONNX domain), ``"qnn"`` (QNN op definitions as DLC v4 stores them,
    ``domain`` is the op package, normally ``qti.aisw``) or ``"snpe"`` (SNPE
    layers of DLC v3 files). Missing optional inputs are ``""``."""

    name: str
    op_type: str
    namespace: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, AttrValue] = field(default_factory=dict)
    domain: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """The (namespace, op type) pair kernels are registered under."""
        return (self.namespace, self.op_type)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return (
            (self.name, self.op_type, self.namespace, self.inputs, self.outputs, self.domain)
            == (other.name, other.op_type, other.namespace, other.inputs, other.outputs, other.domain)
            and self.attrs.keys() == other.attrs.keys()
            and all(_attr_equal(v, other.attrs[k]) for k, v in self.attrs.items())
        )

    __hash__ = None  # type: ignore[assignment]


class LazyTuple(Sequence[T]):
    """A read-only sequence of known length whose items are made all at once on
    first use, then kept. Readers hand out a graph's nodes (and DLC readers its
    inputs and outputs) this way, so opening a file costs no per-node objects;
    it equals the tuple of its items (and any other ``LazyTuple`` with equal
    items), concatenates with tuples into a tuple and, like a mutable-looking
    view, is not hashable. ``make`` must return exactly ``length`` items."""

    __slots__ = ("_len", "_make", "_items")

    def __init__(self, length: int, make: Callable[[], Sequence[T]]) -> None:
        self._len = length
        self._make: Callable[[], Sequence[T]] | None = make
        self._items: tuple[T, ...] | None = None

    def _all(self) -> tuple[T, ...]:
        items = self._items
        if items is None:
            items = self._items = tuple(self._make())  # type: ignore[misc]
            self._make = None  # the decoder and what it holds are no longer needed
        return items

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[T, ...]: ...
    def __getitem__(self, i: int | slice) -> T | tuple[T, ...]:
        return self._all()[i]

    def __iter__(self) -> Iterator[T]:
        return iter(self._all())

    def __contains__(self, item: object) -> bool:
        return item in self._all()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyTuple):
            return len(other) == self._len and self._all() == other._all()
        if isinstance(other, tuple):
            return len(other) == self._len and self._all() == other
        return NotImplemented

    def __add__(self, other: object) -> tuple[T, ...]:
        if isinstance(other, (tuple, LazyTuple)):
            return self._all() + tuple(other)
        return NotImplemented

    def __radd__(self, other: object) -> tuple[T, ...]:
        if isinstance(other, tuple):
            return other + self._all()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._all())


class LazyTable(Mapping[str, T]):
    """A read-only name → item mapping whose names are known up front and whose
    items are made one by one on first lookup (``make(row)``; the caller caches).
    Readers hand out a graph's tensor table this way, so opening a file costs
    no per-tensor objects.

    ``arrays``, when given, makes what :meth:`Graph.arrays` returns for a graph
    with this table straight from the reader's columns, without making items."""

    __slots__ = ("_rows", "_make", "_what", "_arrays")

    def __init__(
        self,
        rows: dict[str, int],
        make: Callable[[int], T],
        what: str = "",
        arrays: Callable[[], dict[str, np.ndarray]] | None = None,
    ) -> None:
        self._rows = rows
        self._make = make
        self._what = what
        self._arrays = arrays

    def arrays(self) -> dict[str, np.ndarray] | None:
        """Every static item's data by name, as :meth:`Graph.arrays` defines
        it, made in bulk by the reader; None when the reader has no bulk path."""
        return None if self._arrays is None else self._arrays()

    def __getitem__(self, name: str) -> T:
        return self._make(self._rows[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __repr__(self) -> str:
        return f"<{self._what or 'table'}: {len(self._rows)} entries>"


@dataclass(frozen=True)
class BackendBinary:
    """A compiled graph inside a backend's own binary (e.g. a QNN context binary).

    ``blob`` holds the whole binary (several graphs may point to one blob);
    ``graph_name`` is the graph's name inside it.
    """

    backend: str
    blob: "Blob"
    graph_name: str


@dataclass(frozen=True, eq=False)
class Graph:
    """A named computation: inputs, outputs, nodes in topological order and the
    table of every tensor it names (weights carry data). ``nodes`` is a tuple,
    or a :class:`LazyTuple` (equal to that tuple) in graphs read from a file;
    so are ``inputs`` and ``outputs`` in graphs read from a DLC."""

    name: str
    inputs: Sequence[Tensor]
    outputs: Sequence[Tensor]
    nodes: Sequence[Node] = ()
    tensors: Mapping[str, Tensor] = field(default_factory=dict)
    opsets: Mapping[str, int] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    binary: BackendBinary | None = None

    @property
    def weights(self) -> tuple[Tensor, ...]:
        """Static tensors (those with data), in table order."""
        return tuple(t for t in self.tensors.values() if t.data is not None)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every weight as a read-only zero-copy numpy view, by name.

        The recorded checksums of all their blobs not verified yet are checked
        first, in one batch on the native thread pool (a failing blob raises
        :class:`~ctxbin.errors.ChecksumError` naming file, tensor and offset,
        before any view is made). Tables read from a ``.ctxbin`` file make
        the views from their columns, without making :class:`Tensor` objects.
        """
        from .weights import hash_blobs

        if isinstance(self.tensors, LazyTable):
            bulk = self.tensors.arrays()
            if bulk is not None:
                return bulk
        weights = self.weights
        hash_blobs(list({id(t.data): t.data for t in weights}.values()), release=False)  # type: ignore[misc]
        return {t.name: t.numpy() for t in weights}

    def op_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for n in self.nodes:
            hist[n.op_type] = hist.get(n.op_type, 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        backend: str = "auto",
        **options: Any,
    ) -> "RunResult":
        """Run this graph; returns ``{output name: array}`` with ``.backend`` set.

        ``backend`` is ``"emulator"``, ``"htp"`` or ``"auto"`` (HTP when this
        graph has a compiled binary and the HTP libraries are usable, else
        the emulator).
        """
        from .runtime.session import run_graph

        return run_graph(self, inputs, backend=backend, **options)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (
            self.name == other.name
            and self.inputs == other.inputs
            and self.outputs == other.outputs
            and self.nodes == other.nodes
            and list(self.tensors.items()) == list(other.tensors.items())
            and dict(self.opsets) == dict(other.opsets)
            and dict(self.metadata) == dict(other.metadata)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Target:
    """The device a container was built for. Empty fields mean "any"."""

    backend: str = ""
    soc_model: int | None = None
    htp_arch: int | None = None
    sdk_version: str = ""

    def compatible(self, other: "Target") -> bool:
        """True when nothing set on both sides disagrees."""
        for a, b in (
            (self.backend, other.backend),
            (self.soc_model, other.soc_model),
            (self.htp_arch, other.htp_arch),
        ):
            if a not in ("", None) and b not in ("", None) and a != b:
                return False
        return True

    def merged(self, other: "Target") -> "Target":
        return Target(
            backend=self.backend or other.backend,
            soc_model=self.soc_model if self.soc_model is not None else other.soc_model,
            htp_arch=self.htp_arch if self.htp_arch is not None else other.htp_arch,
            sdk_version=self.sdk_version or other.sdk_version,
        )

    def describe(self) -> str:
        parts = []
        if self.backend:
            parts.append(self.backend)
        if self.soc_model is not None:
            parts.append(f"soc_model={self.soc_model}")
        if self.htp_arch is not None:
            parts.append(f"htp_arch=v{self.htp_arch}")
        if self.sdk_version:
            parts.append(f"sdk={self.sdk_version}")
        return " ".join(parts) or "any"


@dataclass(frozen=True, eq=False)
class Container:
    """An ordered set of uniquely named graphs plus where they came from."""

    graphs: tuple[Graph, ...]
    target: Target = Target()
    metadata: Mapping[str, str] = field(default_factory=dict)
    source: str = ""  # path the container was read from, if any
    format: str = ""  # "ctxbin", "onnx", "dlc", "qnn", ...
    format_version: str = ""

    @property
    def graph_names(self) -> list[str]:
        return [g.name for g in self.graphs]

    def graph(self, name: str) -> Graph:
        for g in self.graphs:
            if g.name == name:
                return g
        raise GraphNotFoundError(name, self.graph_names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Container):
            return NotImplemented
        return (
            self.graphs == other.graphs
            and self.target == other.target
            and dict(self.metadata) == dict(other.metadata)
        )

    __hash__ = None  # type: ignore[assignment]
