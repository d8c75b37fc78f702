"""A plain asyncua server under load, run in its own process so the client's CPU is measured
alone: ``--scalars N`` Double nodes ``s=v<i>`` and ``--arrays K`` Float[] nodes ``s=a<i>`` of
``--samples L`` samples (namespace ``urn:test:load``). Every ``--period`` seconds, on its own
schedule, it writes round ``r`` (1, 2, ...): each scalar takes the value ``r`` and each array
a new block, all stamped with the round's source time (for arrays: the time of the block's
first sample, ``start + (r - 1) * period``). Prints ``ready`` once clients can connect.

Usage: python -m tests.integration.peers.opcua_load_server PORT [--scalars N] [--arrays K]
       [--samples L] [--period S]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from asyncua import Server, ua

NS = "urn:test:load"


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--scalars", type=int, default=0)
    p.add_argument("--arrays", type=int, default=0)
    p.add_argument("--samples", type=int, default=2560)
    p.add_argument("--period", type=float, default=1.0)
    args = p.parse_args()
    t0 = time.perf_counter()
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/load/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NS)
    scalars = [ua.NodeId(f"v{i}", ns) for i in range(args.scalars)]
    arrays = [ua.NodeId(f"a{i}", ns) for i in range(args.arrays)]
    # at most 100 variables per folder: asyncua checks a parent's references linearly per add
    folders = [
        (await server.nodes.objects.add_folder(ua.NodeId(f"f{k}", ns), f"{ns}:f{k}")).nodeid
        for k in range((len(scalars) + len(arrays)) // 100 + 1)
    ]
    items = [
        _variable(nid, ns, ua.Variant(0.0, ua.VariantType.Double), folders[i // 100])
        for i, nid in enumerate(scalars)
    ]
    items += [
        _variable(nid, ns, ua.Variant([0.0], ua.VariantType.Float), folders[-1]) for nid in arrays
    ]
    for res in await server.iserver.isession.add_nodes(items):  # one call: fast for many
        res.StatusCode.check()
    t_ready = time.perf_counter() - t0
    await server.start()
    print("ready", flush=True)
    print(f"address space built in {t_ready:.1f}s", file=sys.stderr, flush=True)
    rng = np.random.default_rng(0)
    # blocks differ from round to round (an unchanged value would not be a data change)
    blocks = [rng.standard_normal(args.samples).astype(np.float32).tolist() for _ in range(4)]
    loop = asyncio.get_running_loop()
    start_wall = datetime.now(UTC)
    start = loop.time()
    r = 0
    while True:
        r += 1
        ts = start_wall + timedelta(seconds=(r - 1) * args.period)
        now = datetime.now(UTC)
        for nid in scalars:
            dv = ua.DataValue(ua.Variant(float(r), ua.VariantType.Double), SourceTimestamp=now)
            await server.write_attribute_value(nid, dv)
        for nid in arrays:
            dv = ua.DataValue(ua.Variant(blocks[r % 4], ua.VariantType.Float), SourceTimestamp=ts)
            await server.write_attribute_value(nid, dv)
        await asyncio.sleep(max(0.0, start + r * args.period - loop.time()))  # the device's pace


def _variable(nid: ua.NodeId, ns: int, value: ua.Variant, parent: ua.NodeId) -> ua.AddNodesItem:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nid
    item.BrowseName = ua.QualifiedName(nid.Identifier, ns)
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasComponent)
    item.TypeDefinition = ua.NodeId(ua.ObjectIds.BaseDataVariableType)
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(nid.Identifier)
    attrs.DataType = ua.NodeId(
        ua.ObjectIds.Double if not isinstance(value.Value, list) else ua.ObjectIds.Float
    )
    attrs.Value = value
    attrs.ValueRank = (
        ua.ValueRank.OneDimension if isinstance(value.Value, list) else ua.ValueRank.Scalar
    )
    attrs.AccessLevel = ua.AccessLevel.CurrentRead.mask
    attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    item.NodeAttributes = attrs
    return item


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
