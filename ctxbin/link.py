"""Linking: several graphs into one container whose graphs share weights.

Two weight tensors share one stored blob when their names and bytes are equal
(``share="name+content"``, the default), when their bytes are equal
(``"content"``), or never (``"none"``). ``include``/``exclude`` restrict
sharing to some tensor names. Equal hashes are always confirmed byte by byte
(the native dedup plan does that) before anything is shared. Hashing and
comparing is one pass over the bytes, which also checks every blob read from
a file against the hash recorded there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence, Union

from .dedup import hash_and_plan
from .errors import LinkError
from .ir import Container, Graph, Target, Tensor
from .weights import Blob

__all__ = ["SHARE_MODES", "GraphShare", "NameConflict", "LinkReport", "link"]

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
    # The keys already encode the mode ("none": every key differs).
    canon, hashes = hash_and_plan(
        keys,
        [b.raw() for b in blobs],
        release=[b.file is not None for b in blobs],  # file mappings: stream, keep RSS low
        progress=progress,
    )
    hash_of = hashes.tolist()
    for b, h in zip(blobs, hash_of):
        b.set_hash(h)  # checks the hash recorded in the source file, if any

    canon_of = canon.tolist()
    new_graphs = []
    for gi, (g, _, _) in enumerate(sources):
        tensors = {}
        for name, t in g.tensors.items():
            if t.data is not None:
                shared = blobs[canon_of[blob_index[id(t.data)]]]
                if shared is not t.data:  # tensors keeping their own blob stay as they are
                    t = dataclasses.replace(t, data=shared)
            tensors[name] = t
        new_graphs.append(dataclasses.replace(g, tensors=tensors))

    report = _report(share, sources, new_graphs, blobs, blob_index, entries, canon_of, hash_of, sorted(excluded))
    meta = {"linked_graphs": ",".join(g.name for g in new_graphs)}
    meta.update(metadata or {})
    return Container(graphs=tuple(new_graphs), target=target, metadata=meta), report


def _report(share, sources, new_graphs, blobs, blob_index, entries, canon, hashes, excluded) -> LinkReport:
    users: dict[int, set[int]] = {}  # canonical blob -> graphs using it
    for gi, t in entries:
        users.setdefault(canon[blob_index[id(t.data)]], set()).add(gi)
    before = 0
    shares = []
    for gi, g in enumerate(new_graphs):
        own = {id(t.data): t.data for t in g.tensors.values() if t.data is not None}
        size = sum(b.nbytes for b in own.values())
        before += sum(b.nbytes for b in {id(t.data): t.data for t in sources[gi][0].tensors.values() if t.data is not None}.values())
        shared = sum(b.nbytes for b in own.values() if len(users[blob_index[id(b)]]) > 1)
        shares.append(GraphShare(g.name, size, shared))
    after = sum(blobs[c].nbytes for c in set(canon))

    # Contents are told apart by hash, not by stored blob: equal bytes kept
    # apart on request (share="none", include/exclude) are no conflict.
    by_name: dict[str, dict[int, set[str]]] = {}
    stored: dict[str, set[int]] = {}
    for gi, t in entries:
        c = canon[blob_index[id(t.data)]]
        by_name.setdefault(t.name, {}).setdefault(hashes[c], set()).add(new_graphs[gi].name)
        stored.setdefault(t.name, set()).add(c)
    conflicts = []
    for name, contents in by_name.items():
        if len(contents) > 1:
            graphs = sorted(set().union(*contents.values()))
            if len(graphs) > 1:
                conflicts.append(
                    NameConflict(name, tuple(graphs), len(contents), sum(blobs[c].nbytes for c in stored[name]))
                )
    return LinkReport(share, before, after, tuple(shares), tuple(conflicts), tuple(excluded))
