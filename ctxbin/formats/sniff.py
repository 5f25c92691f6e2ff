"""Which format a file is, from its first bytes, without importing the format
modules (some pull in heavy dependencies such as ``onnx``).

Each function takes the file's first few KB and answers conservatively; the
format modules re-export theirs as ``sniff``.
"""

from __future__ import annotations

import struct

__all__ = ["HEAD_BYTES", "ctxbin", "dlc", "qnn", "epcontext", "onnx", "CTXBIN_MAGIC"]

#: how many leading bytes the sniffers look at
HEAD_BYTES = 4096

CTXBIN_MAGIC = b"CTXBIN\0\0"
#: DLC writers put one of these entries first in the zip
_DLC_ENTRY_PREFIXES = ("model", "dlc.", "aip.", "quant_params")
#: an ONNX NodeProto op_type field (tag 4, length 9) holding "EPContext"
_EPCONTEXT_OP_TYPE = b"\x22\x09EPContext"
#: ModelProto field number -> protobuf wire type
_ONNX_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_ONNX_MAX_IR_VERSION = 100


def ctxbin(head: bytes) -> bool:
    """A ``.ctxbin`` file: its magic."""
    return bytes(head[: len(CTXBIN_MAGIC)]) == CTXBIN_MAGIC


def dlc(head: bytes) -> bool:
    """A ZIP whose first entry has a DLC entry name (``model*``, ``dlc.*``, ...)."""
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        return False
    nlen = int.from_bytes(head[26:28], "little")
    name = head[30 : 30 + nlen]
    try:
        text = bytes(name).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return len(name) == nlen and text.startswith(_DLC_ENTRY_PREFIXES)


def qnn(head: bytes) -> bool:
    """A QNN context binary: four big-endian version words ``2, minor, 0, patch``."""
    if len(head) < 16:
        return False
    major, minor, zero, patch = struct.unpack_from(">4I", head, 0)
    return major == 2 and 1 <= minor <= 15 and zero == 0 and patch < 0x100


def epcontext(head: bytes) -> bool:
    """An ONNX model whose first node is an ``EPContext`` node.

    ONNX writes fields in number order, so the graph's first node, with its op
    type, comes within the first bytes after the small model header.
    """
    return len(head) > 2 and head[0] == 0x08 and _EPCONTEXT_OP_TYPE in head


def _varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    value = 0
    for i in range(10):
        if pos + i >= len(buf):
            return None
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    return None


def onnx(head: bytes) -> bool:
    """A serialized ``ModelProto``: the first field is ``ir_version`` (writers emit
    fields in number order) with a plausible value, followed by at least one
    more ModelProto field of the right wire type."""
    pos, seen = 0, 0
    while seen < 8:
        tag = _varint(head, pos)
        if tag is None:
            break
        field, wire = tag[0] >> 3, tag[0] & 7
        if _ONNX_MODEL_FIELDS.get(field) != wire or (seen == 0) != (field == 1):
            return False
        value = _varint(head, tag[1])
        seen += 1
        if value is None:
            break
        if field == 1 and not 1 <= value[0] <= _ONNX_MAX_IR_VERSION:
            return False
        pos = value[1] + (value[0] if wire == 2 else 0)
    return seen >= 2
