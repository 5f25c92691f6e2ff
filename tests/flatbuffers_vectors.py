"""What tests build with the reference ``flatbuffers`` package again and again."""

from __future__ import annotations

from typing import Sequence

import flatbuffers

__all__ = ["offset_vector"]


def offset_vector(b: flatbuffers.Builder, refs: Sequence[int]) -> int:
    """A vector of the offsets ``refs`` (strings, tables or vectors already
    made on ``b``), in their order."""
    b.StartVector(4, len(refs), 4)
    for r in reversed(refs):
        b.PrependUOffsetTRelative(r)
    return b.EndVector()
