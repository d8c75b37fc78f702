"""Resolve configured nodes to NodeIds on a connected server: namespace URIs to the server's
current indices, browse paths (below ``Objects``) in batched TranslateBrowsePaths requests."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.object_ids import ObjectIds

from gateway.collectors.opcua.config import OpcUaNode

BROWSE_BATCH = 500


@dataclass(frozen=True)
class ResolvedNode:
    """A configured node (``index`` into the device's ``nodes``) and its NodeIds this session."""

    index: int
    node: OpcUaNode
    node_id: ua.NodeId
    sequence_id: ua.NodeId | None = None


@dataclass(frozen=True)
class _Ref:
    index: int
    what: str  # "node" or "sequence"
    ns: int
    node_id: str | None
    path: list[str] | None


async def resolve_nodes(
    client: Client, nodes: list[OpcUaNode], only: Collection[int] | None = None
) -> tuple[list[ResolvedNode], list[tuple[int, str]]]:
    """Resolved nodes, and ``(index, reason)`` for those that cannot be (unknown namespace URI,
    browse path not found); of the nodes at the indices ``only`` if given, else of all.
    Indices are into ``nodes``. Network errors propagate."""
    ns_array: list[str] = list(await client.get_namespace_array())
    errors: list[tuple[int, str]] = []
    refs: list[_Ref] = []
    wanted = range(len(nodes)) if only is None else sorted(only)
    for i in wanted:
        n = nodes[i]
        if n.namespace_uri not in ns_array:
            errors.append((i, f"namespace {n.namespace_uri!r} is not on the server"))
            continue
        ns = ns_array.index(n.namespace_uri)
        refs.append(_Ref(i, "node", ns, n.node_id, n.browse_path))
        if n.sequence_node_id is not None or n.sequence_browse_path is not None:
            refs.append(_Ref(i, "sequence", ns, n.sequence_node_id, n.sequence_browse_path))
    ids: dict[tuple[int, str], ua.NodeId] = {}
    by_path = [r for r in refs if r.path is not None]
    for r in refs:
        if r.node_id is not None:
            ids[(r.index, r.what)] = ua.NodeId.from_string(f"ns={r.ns};{r.node_id}")
    for start in range(0, len(by_path), BROWSE_BATCH):
        batch = by_path[start : start + BROWSE_BATCH]
        results = await client.uaclient.translate_browsepaths_to_nodeids(
            [_browse_path(r) for r in batch]
        )
        for r, res in zip(batch, results, strict=True):
            if res.StatusCode.is_good() and res.Targets:
                ids[(r.index, r.what)] = res.Targets[0].TargetId
            else:
                errors.append(
                    (
                        r.index,
                        f"{r.what} browse path {'/'.join(r.path or [])} not found "
                        f"({res.StatusCode.name})",
                    )
                )
    failed = {i for i, _ in errors}
    resolved = [
        ResolvedNode(i, nodes[i], ids[(i, "node")], ids.get((i, "sequence")))
        for i in wanted
        if i not in failed and (i, "node") in ids
    ]
    return resolved, errors


def _browse_path(r: _Ref) -> ua.BrowsePath:
    rpath = ua.RelativePath()
    for name in r.path or []:
        el = ua.RelativePathElement()
        el.ReferenceTypeId = ua.TwoByteNodeId(ua.Int32(ObjectIds.HierarchicalReferences))
        el.IsInverse = False  # type: ignore[assignment]
        el.IncludeSubtypes = True  # type: ignore[assignment]
        el.TargetName = ua.QualifiedName(name, r.ns)
        rpath.Elements.append(el)
    bp = ua.BrowsePath()
    bp.StartingNode = ua.TwoByteNodeId(ua.Int32(ObjectIds.ObjectsFolder))
    bp.RelativePath = rpath
    return bp
