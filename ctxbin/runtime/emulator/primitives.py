"""Channels-last (NHWC) numpy primitives for the QNN and SNPE kernels.

QNN op definitions and SNPE layers keep activations as ``[N, H, W, C]`` and
convolution filters as ``[kh, kw, C_in/group, C_out]``, so these primitives
work in that layout directly: each kernel tap is one strided view of the padded
input and one matmul over channels (a loop over taps, never over pixels).
Geometry is explicit (stride, ``((top, bottom), (left, right))`` padding,
dilation); a kernel that declares its output size passes it as ``out_hw`` and
any padding beyond the explicit amount is added at the bottom/right, as QNN's
and TensorFlow's "same"/ceil modes do.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence, TypeVar

import numpy as np

from ...errors import InputError
from ...ir import Node, Tensor

__all__ = [
    "Pads", "choice", "pads_of", "pair", "declared_shape", "compute_dtype", "window_out", "same_pads", "nearest_indices",
    "conv2d", "transpose_conv2d", "pool2d", "resize2d",
]

#: ((top, bottom), (left, right))
Pads = tuple[tuple[int, int], tuple[int, int]]

V = TypeVar("V")


def choice(node: Node, attr: str, table: Mapping[Any, V], default: Any, cast: type = int) -> V:
    """``table[cast(node.attrs[attr])]`` (``default`` when the attribute is
    absent): the variant a QNN op selects with a code or name; an
    :class:`InputError` lists the known ones otherwise."""
    key = cast(node.attrs.get(attr, default))
    if key not in table:
        raise InputError(f"node {node.name!r} ({node.op_type}): {attr} {key!r} is not one of {sorted(table)}")
    return table[key]


def pair(value: Sequence[int] | np.ndarray | int, what: str) -> tuple[int, int]:
    """(height, width) from one value or two (a QNN ``stride``/``dilation`` tensor)."""
    v = [int(x) for x in np.asarray(value).reshape(-1)]
    if len(v) == 1:
        v = v * 2
    if len(v) != 2:
        raise InputError(f"{what} {v} is not two values (height, width)")
    return v[0], v[1]


def pads_of(value: Sequence[Sequence[int]] | np.ndarray) -> Pads:
    """``pad_amount``-style padding ``[[top, bottom], [left, right]]`` as a tuple."""
    a = np.asarray(value, np.int64)
    if a.shape != (2, 2) or (a < 0).any():
        raise InputError(f"padding {a.tolist()} is not [[top, bottom], [left, right]] of non-negative sizes")
    return (int(a[0, 0]), int(a[0, 1])), (int(a[1, 0]), int(a[1, 1]))


def declared_shape(node: Node, outputs: Sequence[Tensor | None], index: int = 0) -> tuple[int, ...]:
    """The shape the graph's tensor table declares for output ``index`` of ``node``
    (QNN ops such as Reshape carry no shape parameter: the table is the definition)."""
    spec = outputs[index] if index < len(outputs) else None
    if spec is None or spec.is_symbolic:
        raise InputError(
            f"node {node.name!r} ({node.op_type}) needs the declared shape of output {index}, "
            "which the graph does not give (or the emulator did not pass)"
        )
    return tuple(int(d) for d in spec.shape)  # type: ignore[arg-type]


def window_out(size: int, extent: int, stride: int, before: int, after: int, ceil: bool = False) -> int:
    """Number of window positions along one axis (floor or ceil rounding)."""
    span = size + before + after - extent
    if span < 0 or stride < 1:
        raise InputError(f"window of extent {extent} (stride {stride}) does not fit {size} + padding {before}+{after}")
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    # a last window that would start in the end padding is dropped (ONNX, PyTorch)
    return out - 1 if (out - 1) * stride >= size + before else out


def same_pads(size: int, extent: int, stride: int, upper: bool = True) -> tuple[int, int]:
    """(before, after) padding of a "same" window (output size ``ceil(size / stride)``);
    an odd unit goes after (ONNX SAME_UPPER, TensorFlow) or, not ``upper``, before."""
    total = max(0, (-(-size // stride) - 1) * stride + extent - size)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def _geometry(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
    dilation: tuple[int, int], out_hw: tuple[int, int] | None,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(extents, output size, extra bottom/right padding) of a 2-D window over ``x``."""
    if x.ndim != 4:
        raise InputError(f"expected an NHWC activation, got shape {x.shape}")
    if min(kernel + stride + dilation) < 1:
        raise InputError(f"invalid window: kernel {kernel}, stride {stride}, dilation {dilation}")
    ext = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    if out_hw is None:
        out = tuple(window_out(i, e, s, p[0], p[1]) for i, e, s, p in zip(x.shape[1:3], ext, stride, pads))
    else:
        out = tuple(int(o) for o in out_hw)
        if min(out) < 1:
            raise InputError(f"declared output size {out} is not positive")
    # padding the declared output size needs beyond the explicit amount (never negative)
    extra = tuple(max(0, (o - 1) * s + e - (i + p[0] + p[1])) for o, s, e, i, p in zip(out, stride, ext, x.shape[1:3], pads))
    return ext, out, extra  # type: ignore[return-value]


def _padded(x: np.ndarray, pads: Pads, extra: tuple[int, int], value: float) -> np.ndarray:
    widths = ((0, 0), (pads[0][0], pads[0][1] + extra[0]), (pads[1][0], pads[1][1] + extra[1]), (0, 0))
    if not any(a or b for a, b in widths):
        return x
    return np.pad(x, widths, mode="constant", constant_values=value)


def _tap(xp: np.ndarray, i: int, j: int, out: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> np.ndarray:
    """The input pixels tap (i, j) reads for every output position: [N, OH, OW, C] (a view)."""
    r0, c0 = i * dilation[0], j * dilation[1]
    return xp[:, r0 : r0 + (out[0] - 1) * stride[0] + 1 : stride[0], c0 : c0 + (out[1] - 1) * stride[1] + 1 : stride[1], :]


def compute_dtype(*arrays: np.ndarray) -> np.dtype:
    """The float type kernels compute in: float64 if any input is, else float32
    (float16, as QNN fp16 graphs carry, and integers accumulate in float32)."""
    return np.dtype(np.float64) if any(a.dtype == np.float64 for a in arrays) else np.dtype(np.float32)


def conv2d(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *,
    stride: Sequence[int] = (1, 1), pads: Pads = ((0, 0), (0, 0)), dilation: Sequence[int] = (1, 1),
    groups: int = 1, out_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """2-D convolution of ``x`` [N,H,W,C] with ``w`` [kh,kw,C/groups,M] (+ ``bias`` [M]) → [N,OH,OW,M] float32."""
    if w.ndim != 4:
        raise InputError(f"convolution filter must be [kh, kw, cin/group, cout], got shape {w.shape}")
    kh, kw, cg, m = w.shape
    c = x.shape[-1] if x.ndim == 4 else -1
    if groups < 1 or cg * groups != c or m % groups:
        raise InputError(f"input channels {c}, filter {w.shape} and group {groups} do not fit")
    st, dl = pair(stride, "stride"), pair(dilation, "dilation")
    _, out, extra = _geometry(x, (kh, kw), st, pads, dl, out_hw)
    dt = compute_dtype(x, w)
    xp = _padded(np.asarray(x, dt), pads, extra, 0.0)
    wc = np.asarray(w, dt)
    n = x.shape[0]
    y = np.zeros((n, out[0], out[1], m), dt)
    mg = m // groups
    for i in range(kh):
        for j in range(kw):
            t = _tap(xp, i, j, out, st, dl)
            if groups == 1:
                y += t @ wc[i, j]
            elif cg == 1:
                # depthwise: output channel k reads input channel k // multiplier
                y += (np.repeat(t, mg, axis=-1) if mg > 1 else t) * wc[i, j, 0]
            else:
                tg = t.reshape(n, out[0], out[1], groups, cg)
                wg = wc[i, j].reshape(cg, groups, mg)
                y += np.einsum("nhwgc,cgm->nhwgm", tg, wg).reshape(y.shape)
    if bias is not None:
        y += np.asarray(bias, dt).reshape(-1)
    return y


def transpose_conv2d(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *,
    stride: Sequence[int] = (1, 1), pads: Pads = ((0, 0), (0, 0)), dilation: Sequence[int] = (1, 1),
    output_padding: Sequence[int] = (0, 0), groups: int = 1,
) -> np.ndarray:
    """Transposed convolution of ``x`` [N,H,W,C] with ``w`` [kh,kw,C,M/groups] → [N,OH,OW,M] float32,
    ``OH = stride*(H-1) + dilation*(kh-1) + 1 - top - bottom + output_padding``."""
    if w.ndim != 4 or x.ndim != 4:
        raise InputError(f"transposed convolution needs NHWC input and [kh,kw,cin,cout/group] filter, got {x.shape}, {w.shape}")
    kh, kw, c, mg = w.shape
    if groups < 1 or c != x.shape[-1] or c % groups:
        raise InputError(f"input channels {x.shape[-1]}, filter {w.shape} and group {groups} do not fit")
    st, dl, op = pair(stride, "stride"), pair(dilation, "dilation"), pair(output_padding, "output_padding")
    if min(st + dl) < 1 or min(op) < 0:
        raise InputError(f"invalid transposed convolution: stride {st}, dilation {dl}, output padding {op}")
    n, h, wd = x.shape[:3]
    full = tuple(s * (i - 1) + d * (k - 1) + 1 + o for s, i, d, k, o in zip(st, (h, wd), dl, (kh, kw), op))
    size = tuple(f - p[0] - p[1] for f, p in zip(full, pads))
    if min(size) < 1:
        raise InputError(f"transposed convolution output {size} is empty (padding {pads})")
    dt = compute_dtype(x, w)
    xc, wc = np.asarray(x, dt), np.asarray(w, dt)
    cg = c // groups
    y = np.zeros((n, full[0], full[1], groups * mg), dt)
    xg = xc.reshape(n, h, wd, groups, cg)
    for i in range(kh):
        for j in range(kw):
            wg = wc[i, j].reshape(groups, cg, mg)
            contrib = np.einsum("nhwgc,gcm->nhwgm", xg, wg).reshape(n, h, wd, groups * mg)
            r0, c0 = i * dl[0], j * dl[1]
            y[:, r0 : r0 + (h - 1) * st[0] + 1 : st[0], c0 : c0 + (wd - 1) * st[1] + 1 : st[1], :] += contrib
    y = y[:, pads[0][0] : pads[0][0] + size[0], pads[1][0] : pads[1][0] + size[1], :]
    if bias is not None:
        y = y + np.asarray(bias, dt).reshape(-1)
    return np.ascontiguousarray(y)


def pool2d(
    x: np.ndarray, kind: Literal["max", "avg"], size: Sequence[int], *,
    stride: Sequence[int] = (1, 1), pads: Pads = ((0, 0), (0, 0)), count_pad: bool = False,
    out_hw: tuple[int, int] | None = None, ceil: bool = False,
) -> np.ndarray:
    """Max or average pooling of ``x`` [N,H,W,C]. ``count_pad``: the explicit padding
    counts in an average's divisor (padding added for ``ceil``/``out_hw`` never does)."""
    k, st = pair(size, "pool size"), pair(stride, "stride")
    if out_hw is None and ceil:
        if x.ndim != 4:
            raise InputError(f"expected an NHWC activation, got shape {x.shape}")
        out_hw = tuple(window_out(i, e, s, p[0], p[1], ceil=True) for i, e, s, p in zip(x.shape[1:3], k, st, pads))  # type: ignore[assignment]
    _, out, extra = _geometry(x, k, st, pads, (1, 1), out_hw)
    if kind == "max":
        lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        xp = _padded(x, pads, extra, lowest)
        y = None
        for i in range(k[0]):
            for j in range(k[1]):
                t = _tap(xp, i, j, out, st, (1, 1))
                y = t.copy() if y is None else np.maximum(y, t, out=y)
        assert y is not None
        return y
    if kind != "avg":
        raise InputError(f"unknown pooling kind {kind!r}")
    dt = compute_dtype(x)
    xp = _padded(np.asarray(x, dt), pads, extra, 0.0)
    # which padded positions count toward each window's divisor
    valid = np.zeros(xp.shape[1:3], dt)
    h, w = x.shape[1:3]
    if count_pad:
        valid[: pads[0][0] + h + pads[0][1], : pads[1][0] + w + pads[1][1]] = 1
    else:
        valid[pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + w] = 1
    total = np.zeros((x.shape[0], out[0], out[1], x.shape[3]), dt)
    count = np.zeros(out, dt)
    for i in range(k[0]):
        for j in range(k[1]):
            total += _tap(xp, i, j, out, st, (1, 1))
            count += _tap(valid[None, :, :, None], i, j, out, st, (1, 1))[0, :, :, 0]
    total /= np.maximum(count, 1)[None, :, :, None]
    return total


def _source(out: int, size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """Input coordinate of each output row/column (float64)."""
    d = np.arange(out, dtype=np.float64)
    if align_corners:
        return d * ((size - 1) / (out - 1)) if out > 1 else np.zeros(out)
    if half_pixel:
        return (d + 0.5) * (size / out) - 0.5
    return d * (size / out)


def nearest_indices(out: int, size: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """Source index of each of ``out`` positions resized from ``size`` by a
    nearest-neighbour resize with TensorFlow's conventions (QNN, SNPE)."""
    d = np.arange(out, dtype=np.float64)
    if align_corners:
        # halves round up (TensorFlow's roundf), not to even
        src = np.floor(d * ((size - 1) / (out - 1)) + 0.5) if out > 1 else np.zeros(out)
    else:
        src = np.floor((d + 0.5) * (size / out) if half_pixel else d * (size / out))
    return np.clip(src, 0, size - 1).astype(np.intp)


def resize2d(
    x: np.ndarray, out_hw: tuple[int, int], mode: Literal["bilinear", "nearest"], *,
    align_corners: bool = False, half_pixel: bool = False,
) -> np.ndarray:
    """Resize the spatial dims of ``x`` [N,H,W,C] to ``out_hw``, with TensorFlow's
    coordinate conventions (``align_corners``, ``half_pixel_centers``) that QNN's
    ResizeBilinear / ResizeNearestNeighbor and SNPE's Scaling layer follow."""
    if x.ndim != 4 or min(out_hw) < 1:
        raise InputError(f"resize needs an NHWC input and a positive size, got {x.shape} -> {out_hw}")
    if align_corners and half_pixel:
        raise InputError("align_corners and half_pixel_centers cannot both be set")
    h, w = x.shape[1:3]
    if mode == "nearest":
        rows, cols = (nearest_indices(o, s, align_corners, half_pixel) for o, s in zip(out_hw, (h, w)))
        return x[:, rows][:, :, cols]
    if mode != "bilinear":
        raise InputError(f"unknown resize mode {mode!r}")
    dt = compute_dtype(x)
    xc = np.asarray(x, dt)
    axes = []
    for o, s in zip(out_hw, (h, w)):
        src = np.clip(_source(o, s, align_corners, half_pixel), 0, s - 1)
        lo = np.floor(src).astype(np.intp)
        hi = np.minimum(lo + 1, s - 1)
        axes.append((lo, hi, (src - lo).astype(dt)))
    (r0, r1, fr), (c0, c1, fc) = axes
    rows = xc[:, r0] * (1 - fr)[None, :, None, None] + xc[:, r1] * fr[None, :, None, None]
    return rows[:, :, c0] * (1 - fc)[None, None, :, None] + rows[:, :, c1] * fc[None, None, :, None]
