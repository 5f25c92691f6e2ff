"""Linking: several graphs into one container whose graphs share weights.

Two weight tensors share one stored blob when their names and bytes are equal
(``share="name+content"``, the default), when their bytes are equal
(``"content"``), or never (``"none"``). ``include``/``exclude`` restrict
sharing to some tensor names. Equal hashes are always confirmed byte by byte
(the native dedup plan does that) before anything is shared. Hashing and
comparing is one pass over the bytes, which also checks every blob read from
a file against the hash recorded there.

:func:`link_to_file` links straight into a file. For a ``.ctxbin`` it first
assumes the common case, every same-name tensor equal to the first: that plan
fixes the metadata's size, hence where each blob goes, before any byte is
read, so one pass compares, hashes and writes each blob while it is in cache.
The first difference ends that pass and the link is done in two passes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, Union

import numpy as np

from .dedup import candidate_plan, hash_and_plan, hash_and_write
from .errors import LinkError
from .hashing import native_available
from .ir import Container, Graph, Target, Tensor
from .weights import Blob

__all__ = ["SHARE_MODES", "GraphShare", "NameConflict", "LinkReport", "link", "link_to_file"]

SHARE_MODES = ("name+content", "content", "none")

#: ``progress(done_bytes, total_bytes)``, called while the weights are hashed.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GraphShare:
    """How much of one graph's weight bytes live in blobs other graphs use too."""

    name: str
    weight_bytes: int
    shared_bytes: int

    @property
    def shared_fraction(self) -> float:
        return self.shared_bytes / self.weight_bytes if self.weight_bytes else 0.0


@dataclass(frozen=True)
class NameConflict:
    """A tensor name that carries different bytes in different graphs: never
    merged, and on device it costs a copy per distinct content."""

    name: str
    graphs: tuple[str, ...]
    distinct_contents: int
    bytes: int  # bytes stored for this name across its distinct contents


@dataclass(frozen=True)
class LinkReport:
    mode: str
    bytes_before: int  # every graph's weights stored on their own
    bytes_after: int  # unique blobs in the linked container
    graphs: tuple[GraphShare, ...]
    conflicts: tuple[NameConflict, ...]
    excluded: tuple[str, ...]  # tensor names kept apart by include/exclude

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "bytes_saved": self.bytes_saved,
            "graphs": [
                {
                    "name": g.name,
                    "weight_bytes": g.weight_bytes,
                    "shared_bytes": g.shared_bytes,
                    "shared_fraction": round(g.shared_fraction, 6),
                }
                for g in self.graphs
            ],
            "same_name_different_content": [
                {"name": c.name, "graphs": list(c.graphs), "distinct_contents": c.distinct_contents, "bytes": c.bytes}
                for c in self.conflicts
            ],
            "excluded": list(self.excluded),
        }


def _sources(inputs: Sequence[Union[Container, Graph]]) -> list[tuple[Graph, Target, str]]:
    out = []
    for i, item in enumerate(inputs):
        if isinstance(item, Container):
            where = item.source or f"input {i}"
            out.extend((g, item.target, where) for g in item.graphs)
        elif isinstance(item, Graph):
            out.append((item, Target(), f"input {i}"))
        else:
            raise TypeError(f"link() takes Containers or Graphs, got {type(item).__name__}")
    return out


@dataclass(frozen=True)
class _Gathered:
    """The checked inputs of one link and their weights."""

    share: str
    sources: list[tuple[Graph, Target, str]]  # every graph (renamed), its target and where it came from
    target: Target
    entries: list[tuple[int, Tensor]]  # (graph index, weight tensor)
    blobs: list[Blob]  # distinct blobs, first use first
    blob_index: dict[int, int]  # id(blob) -> index in blobs
    keys: list[str]  # per blob: the key sharing candidates have in common
    excluded: tuple[str, ...]  # tensor names kept apart by include/exclude

    def release(self) -> list[bool]:
        return [b.file is not None for b in self.blobs]  # file mappings: stream, keep RSS low


def _gather(
    inputs: Sequence[Union[Container, Graph]],
    share: str,
    names: Sequence[str] | None,
    include: Iterable[str] | None,
    exclude: Iterable[str] | None,
) -> _Gathered:
    if share not in SHARE_MODES:
        raise LinkError(f"unknown sharing mode {share!r}; choose one of {', '.join(SHARE_MODES)}")
    sources = _sources(inputs)
    if not sources:
        raise LinkError("nothing to link: no graphs given")
    if names is not None:
        if len(names) != len(sources):
            raise LinkError(f"{len(names)} names given for {len(sources)} graphs")
        sources = [(dataclasses.replace(g, name=n), t, w) for (g, t, w), n in zip(sources, names)]

    seen: dict[str, str] = {}
    target = Target()
    target_from = ""
    for g, t, where in sources:
        if g.name in seen:
            raise LinkError(f"graph name {g.name!r} is used by both {seen[g.name]} and {where}; rename one (names= in Python, --names on the command line)")
        seen[g.name] = where
        if not target.compatible(t):
            raise LinkError(
                f"inputs are built for different targets: {target_from} is for {target.describe()}, "
                f"{where} is for {t.describe()}"
            )
        if t != Target() and not target_from:
            target_from = where
        target = target.merged(t)

    # Every weight of every graph, with blobs already shared inside an input
    # counted once.
    entries: list[tuple[int, Tensor]] = [
        (gi, t) for gi, (g, _, _) in enumerate(sources) for t in g.tensors.values() if t.data is not None
    ]
    blobs: list[Blob] = []
    blob_index: dict[int, int] = {}
    for _, t in entries:
        if id(t.data) not in blob_index:
            blob_index[id(t.data)] = len(blobs)
            blobs.append(t.data)  # type: ignore[arg-type]

    inc = None if include is None else set(include)
    exc = set(exclude or ())
    # a misspelt name would silently change what is shared: refuse it
    unknown = sorted(((inc or set()) | exc) - {t.name for _, t in entries})
    if unknown:
        raise LinkError(f"no weight of the inputs is named {', '.join(map(repr, unknown))} (given in include/exclude)")
    excluded: set[str] = set()
    # One key per blob: its tensor name (or a shared key for content mode);
    # blobs barred from sharing get a key nothing else has.
    keys: list[str] = []
    owner_name: dict[int, str] = {}
    for _, t in entries:
        owner_name.setdefault(blob_index[id(t.data)], t.name)
    for bi in range(len(blobs)):
        name = owner_name[bi]
        allowed = (inc is None or name in inc) and name not in exc
        if not allowed:
            excluded.add(name)
            keys.append(f"\0{bi}")
        elif share == "name+content":
            keys.append(name)
        elif share == "content":
            keys.append("")
        else:
            keys.append(f"\0{bi}")
    return _Gathered(share, sources, target, entries, blobs, blob_index, keys, tuple(sorted(excluded)))


def link(
    inputs: Sequence[Union[Container, Graph]],
    *,
    share: str = "name+content",
    names: Sequence[str] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    metadata: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> tuple[Container, LinkReport]:
    """Link the graphs of ``inputs`` (in order) into one container.

    ``names`` renames the graphs (one name per graph, in order). Only tensors
    named in ``include`` (when given) and not in ``exclude`` may be shared.
    Returns the container and a :class:`LinkReport`.
    """
    return _link(_gather(inputs, share, names, include, exclude), metadata, progress)


def _link(job: _Gathered, metadata: dict[str, str] | None, progress: Progress | None) -> tuple[Container, LinkReport]:
    # The keys already encode the mode ("none": every key differs).
    canon, hashes = hash_and_plan(job.keys, [b.raw() for b in job.blobs], release=job.release(), progress=progress)
    hash_of = hashes.tolist()
    for b, h in zip(job.blobs, hash_of):
        b.set_hash(h)  # checks the hash recorded in the source file, if any
    canon_of = canon.tolist()
    return _assemble(job, canon_of, metadata), _report(job, canon_of, hash_of)


def link_to_file(
    inputs: Sequence[Union[Container, Graph]],
    path: str | os.PathLike,
    *,
    share: str = "name+content",
    names: Sequence[str] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    metadata: dict[str, str] | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> LinkReport:
    """Link as :func:`link` does and save the result to ``path`` (the format
    follows the extension; ``options`` go to its writer, e.g. ``durable``).

    The file has the same bytes as ``save(link(...)[0], path)``, and the
    report is the same. A ``.ctxbin`` output linked by ``"name+content"`` (or
    ``"none"``) is made in one pass over the weights where it can be: laid out
    for the plan in which every same-name, same-length tensor shares the first
    one's bytes, the bytes are compared, hashed and written out together, so
    the write copies from cache and never waits for the whole comparison. A
    tensor that turns out to differ ends that pass; the link is then done as
    :func:`link` and :func:`~ctxbin.save` do it.
    """
    from . import save

    job = _gather(inputs, share, names, include, exclude)
    # "content" mode: same-length tensors are rarely all equal. Backend
    # binaries are blobs outside the plan. The pass needs the C core and pwrite.
    if (os.path.splitext(os.fspath(path))[1].lower() == ".ctxbin" and share in ("name+content", "none")
            and all(g.binary is None for g, _, _ in job.sources) and native_available() and hasattr(os, "pwrite")):
        report = _link_in_one_pass(job, path, metadata, progress, options)
        if report is not None:
            return report
    container, report = _link(job, metadata, progress)
    save(container, path, **options)
    return report


def _link_in_one_pass(
    job: _Gathered, path: str | os.PathLike, metadata: dict[str, str] | None, progress: Progress | None,
    options: dict[str, Any],
) -> LinkReport | None:
    """:func:`link_to_file` for a ``.ctxbin`` whose candidates are all equal;
    None (nothing written) when one is not, or the one pass cannot be run."""
    from .formats import ctxbin as ctxbin_format

    canon = candidate_plan(job.keys, [b.nbytes for b in job.blobs]).tolist()
    # The writer lays the file out from the canonical blobs' sizes; the pass
    # gives their bytes and hashes.
    index = {id(job.blobs[bi]): bi for bi in set(canon)}
    hash_of: list[int] = []

    def fill(fd: int, blobs: Sequence[Blob], offsets: Sequence[int]) -> list[int] | None:
        if len(blobs) != len(index):  # the pass writes every canonical blob: all must have a place
            return None
        out = np.zeros(len(job.blobs), np.uint64)
        for b, off in zip(blobs, offsets):
            out[index[id(b)]] = off
        hashes = hash_and_write(job.keys, [b.raw() for b in job.blobs], fd, out,
                                release=job.release(), progress=progress)
        if hashes is None:
            return None
        hash_of.extend(hashes.tolist())
        for b, h in zip(job.blobs, hash_of):
            b.set_hash(h)  # checks the hash recorded in the source file, if any
        return [hash_of[index[id(b)]] for b in blobs]

    container = _assemble(job, canon, metadata)
    if not ctxbin_format.write_filled(container, path, fill, **options):
        return None
    return _report(job, canon, hash_of)


def _assemble(job: _Gathered, canon: list[int], metadata: dict[str, str] | None) -> Container:
    """The linked container: every weight points at ``job.blobs[canon[its blob]]``."""
    new_graphs = []
    for g, _, _ in job.sources:
        tensors = {}
        for name, t in g.tensors.items():
            if t.data is not None:
                blob = job.blobs[canon[job.blob_index[id(t.data)]]]
                if blob is not t.data:  # tensors keeping their own blob stay as they are
                    t = Tensor(t.name, t.dtype, t.shape, t.kind, t.encoding, blob)  # (dataclasses.replace: 3x slower)
            tensors[name] = t
        new_graphs.append(dataclasses.replace(g, tensors=tensors))
    meta = {"linked_graphs": ",".join(g.name for g in new_graphs)}
    meta.update(metadata or {})
    return Container(graphs=tuple(new_graphs), target=job.target, metadata=meta)


def _report(job: _Gathered, canon: list[int], hashes: list[int]) -> LinkReport:
    blobs, blob_index = job.blobs, job.blob_index
    users: dict[int, set[int]] = {}  # canonical blob -> graphs using it
    for gi, t in job.entries:
        users.setdefault(canon[blob_index[id(t.data)]], set()).add(gi)
    own: list[set[int]] = [set() for _ in job.sources]  # per graph: its blobs before and after
    linked: list[set[int]] = [set() for _ in job.sources]
    for gi, t in job.entries:
        own[gi].add(blob_index[id(t.data)])
        linked[gi].add(canon[blob_index[id(t.data)]])
    before = sum(blobs[b].nbytes for bs in own for b in bs)
    shares = tuple(
        GraphShare(g.name, sum(blobs[c].nbytes for c in cs), sum(blobs[c].nbytes for c in cs if len(users[c]) > 1))
        for (g, _, _), cs in zip(job.sources, linked)
    )
    after = sum(blobs[c].nbytes for c in set(canon))

    # Contents are told apart by hash, not by stored blob: equal bytes kept
    # apart on request (share="none", include/exclude) are no conflict.
    by_name: dict[str, dict[int, set[str]]] = {}
    stored: dict[str, set[int]] = {}
    for gi, t in job.entries:
        c = canon[blob_index[id(t.data)]]
        by_name.setdefault(t.name, {}).setdefault(hashes[c], set()).add(job.sources[gi][0].name)
        stored.setdefault(t.name, set()).add(c)
    conflicts = []
    for name, contents in by_name.items():
        if len(contents) > 1:
            graphs = sorted(set().union(*contents.values()))
            if len(graphs) > 1:
                conflicts.append(
                    NameConflict(name, tuple(graphs), len(contents), sum(blobs[c].nbytes for c in stored[name]))
                )
    return LinkReport(job.share, before, after, shares, tuple(conflicts), job.excluded)
