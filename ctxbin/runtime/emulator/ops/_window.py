"""Sliding-window geometry shared by Conv, ConvTranspose and the pooling kernels:
explicit and automatic padding, ceil mode, output sizes, and the strided slice
each kernel tap reads."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

from ....errors import InputError
from ....ir import AttrValue, Node
from ..primitives import same_pads, window_out
from ._common import int_tuple

__all__ = ["Window", "window", "int_attr", "pad_spatial", "taps"]


@dataclass(frozen=True)
class Window:
    """How a kernel of ``kernel`` taps slides over the spatial dims of an input.

    ``pads_begin``/``pads_end`` are the padding the op defines (they count as
    positions for ``count_include_pad``); ``extra_end`` is the further padding
    that ceil mode needs so the last window fits (it never counts).
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    extra_end: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def padded(self) -> bool:
        return any(self.pads_begin) or any(self.pads_end) or any(self.extra_end)


def int_attr(attrs: Mapping[str, AttrValue], name: str, n: int, default: int) -> tuple[int, ...]:
    """Integer-list attribute ``name``, or ``n`` copies of ``default`` when absent or empty."""
    value = attrs.get(name)
    ints = int_tuple(value) if value is not None else ()
    return ints if ints else (default,) * n


def window(node: Node, spatial: Sequence[int], kernel: Sequence[int], *, ceil_mode: bool = False) -> Window:
    """The window of ``node`` (attributes strides, dilations, pads, auto_pad)
    over an input whose spatial dims are ``spatial``."""
    n = len(spatial)
    kernel = tuple(int(k) for k in kernel)
    strides = int_attr(node.attrs, "strides", n, 1)
    dilations = int_attr(node.attrs, "dilations", n, 1)
    pads = int_attr(node.attrs, "pads", 2 * n, 0)
    auto_pad = str(node.attrs.get("auto_pad", "NOTSET"))
    if not (len(kernel) == len(strides) == len(dilations) == n and len(pads) == 2 * n):
        raise InputError(
            f"node {node.name!r} ({node.op_type}): kernel {kernel}, strides {strides}, "
            f"dilations {dilations}, pads {pads} do not fit {n} spatial dims"
        )
    if min(strides + dilations + kernel, default=1) < 1 or min(pads, default=0) < 0:
        raise InputError(f"node {node.name!r} ({node.op_type}): invalid window attributes")
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        same = [same_pads(i, e, s, auto_pad == "SAME_UPPER") for i, e, s in zip(spatial, extent, strides)]
        out = tuple(-(-i // s) for i, s in zip(spatial, strides))
        return Window(kernel, strides, dilations, tuple(b for b, _ in same), tuple(e for _, e in same), (0,) * n, out)
    if auto_pad == "VALID":
        pads = (0,) * (2 * n)
    elif auto_pad != "NOTSET":
        raise InputError(f"node {node.name!r} ({node.op_type}): unknown auto_pad {auto_pad!r}")
    begin, end = pads[:n], pads[n:]
    out_l, extra = [], []
    for i, b, e, x, s in zip(spatial, begin, end, extent, strides):
        if i + b + e < x:
            raise InputError(f"node {node.name!r} ({node.op_type}): window {x} larger than padded input {i + b + e}")
        o = window_out(i, x, s, b, e, ceil=ceil_mode)
        out_l.append(o)
        extra.append(max(0, (o - 1) * s + x - (i + b + e)))
    return Window(kernel, strides, dilations, tuple(begin), tuple(end), tuple(extra), tuple(out_l))


def pad_spatial(x: np.ndarray, win: Window, value: float | int = 0) -> np.ndarray:
    """``x`` ([N, C, *spatial]) padded with ``value`` as the window needs (no copy if none)."""
    if not win.padded:
        return x
    widths = [(0, 0)] * (x.ndim - len(win.kernel)) + [
        (b, e + c) for b, e, c in zip(win.pads_begin, win.pads_end, win.extra_end)
    ]
    return np.pad(x, widths, mode="constant", constant_values=value)


def taps(win: Window) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """For each kernel tap: its offsets and the spatial slices of the padded input
    it reads for every output position."""
    for offs in itertools.product(*(range(k) for k in win.kernel)):
        yield offs, tuple(
            slice(o * d, o * d + (n - 1) * s + 1, s)
            for o, d, n, s in zip(offs, win.dilations, win.out, win.strides)
        )
