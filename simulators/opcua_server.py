"""Serve simulated machines over a real OPC UA server (asyncua), with restart fault injection.

Address space (every browse name and NodeId lives in the namespace registered for
``namespace_uri``, index ``ns``; clients should resolve the index from the URI)::

    Objects/Machines                         ns=<ns>;s=Machines                  folder
      <machine>                              ns=<ns>;s=<machine>                 object
        Temperature   Double  degC           ns=<ns>;s=<machine>.Temperature
        ShaftSpeed    Double  Hz             ns=<ns>;s=<machine>.ShaftSpeed
        OverallRms    Double  g              ns=<ns>;s=<machine>.OverallRms      (latest vib0 block)
        <channel>                            ns=<ns>;s=<machine>.<channel>       object
          Waveform    Float[]                ns=<ns>;s=<machine>.<channel>.Waveform
          FirstIndex  UInt64                 ns=<ns>;s=<machine>.<channel>.FirstIndex
          SampleRate  Double  Hz             ns=<ns>;s=<machine>.<channel>.SampleRate
          Unit        String                 ns=<ns>;s=<machine>.<channel>.Unit

``<machine>`` is ``machine.spec.name``; a name already taken by an earlier machine gets the
machine's 0-based index appended (``pump_1``). ``<channel>`` comes from ``machine.channels``
(``vib0``, ``vib1``, ..., ``mic``).

Contracts:
- ``Waveform`` holds the samples of the latest published block; ``FirstIndex`` the absolute
  index of its first sample in the channel's stream. ``publish`` writes ``FirstIndex`` *before*
  ``Waveform``, so a client subscribed to both sees a block's ``FirstIndex`` change no later
  than its ``Waveform`` change (same or earlier notification); consecutive blocks are
  contiguous (``FirstIndex + len(Waveform)`` is the next block's ``FirstIndex``).
- Source timestamps share one origin, the wall time of the first ``start()``: a block's
  ``SourceTimestamp`` is ``origin + first_index / sample_rate`` (its first sample), the scalars'
  is ``origin + snapshot.t_real_s``. ``restart()`` keeps the origin (the sample stream goes on).
- Security: NoSecurity endpoint only, anonymous access (a test simulator).
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import numpy as np
from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds

from gateway.core.errors import ResourceUnavailableError
from simulators.machine import Machine, MachineSnapshot

log = logging.getLogger(__name__)

RESTART_ATTEMPTS = 10
RESTART_RETRY_S = 0.2


@dataclass(frozen=True)
class _VarDef:
    """One variable to create: parent NodeId string, browse name, initial value and type."""

    parent: str
    name: str
    value: object
    vtype: ua.VariantType
    array: bool = False


def unique_names(machines: list[Machine]) -> list[str]:
    """``spec.name`` per machine; a name already used gets ``_<index>`` appended."""
    names: list[str] = []
    for i, m in enumerate(machines):
        name = m.spec.name
        while name in names:
            name = f"{name}_{i}"
        names.append(name)
    return names


class MachineOpcUaServer:
    """An OPC UA server exposing ``machines`` under ``Objects/Machines``; a ``Plant`` publisher.

    Lifecycle: ``start()`` returns once clients can connect (raises
    ``ResourceUnavailableError`` if the port cannot be bound); ``stop()`` closes every client
    connection and session; ``restart()`` = stop + start on the same port with the same
    address space and latest values. ``publish`` may be called at any time: while the server is
    down it only records the values, which the next start serves.
    """

    def __init__(self, machines: list[Machine], *, host: str = "127.0.0.1", port: int = 4840,
                 namespace_uri: str = "urn:pdm-gateway:simulator") -> None:
        self.machines = machines
        self.host, self.port, self.namespace_uri = host, port, namespace_uri
        self.names = unique_names(machines)
        self.ns = 0  # namespace index, known after start()
        self.origin: datetime | None = None  # wall time of sample 0 (first start())
        self._server: Server | None = None
        self._last: dict[str, ua.DataValue] = {}  # NodeId string -> latest value (for restart)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/pdm-sim/"

    @property
    def running(self) -> bool:
        return self._server is not None

    def node_id(self, *path: str) -> ua.NodeId:
        """The NodeId of ``path`` (e.g. ``node_id("m1", "vib0", "Waveform")``)."""
        return _nid(".".join(path), self.ns)

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Build the address space and listen; return once clients can connect."""
        if self._server is not None:
            raise RuntimeError("already started")
        if self.origin is None:
            self.origin = datetime.now(UTC)
        self._check_bindable()  # fail fast, before the slow init; the real bind decides
        await self._start_server()

    async def stop(self) -> None:
        """Close every client connection and session, and stop listening."""
        server, self._server = self._server, None
        if server is None:
            return
        # sessions with subscriptions would outlive the transport (waiting for a client to
        # reactivate them): close them so a stop really loses sessions and leaves no tasks
        sessions = list(getattr(server.iserver, "_external_sessions", {}).values())
        await server.stop()
        for s in sessions:
            await s.close_session(True)

    async def restart(self, *, attempts: int = RESTART_ATTEMPTS,
                      retry_s: float = RESTART_RETRY_S) -> None:
        """Fault injection: stop, then start again on the same port with the same address space
        and latest values. Client sessions and subscriptions are lost; clients must reconnect.

        The listener uses SO_REUSEADDR (asyncio's default on POSIX), so TIME_WAIT connections do
        not block the bind; should the port still be busy, the bind is retried ``attempts``
        times, ``retry_s`` apart, before ``ResourceUnavailableError`` (the server stays down).
        """
        await self.stop()
        for attempt in range(1, attempts + 1):
            try:
                self._check_bindable()
                break
            except ResourceUnavailableError:
                if attempt >= attempts:
                    raise
                log.info("opcua sim: port %s still busy after stop, retrying", self.port)
                await asyncio.sleep(retry_s)  # bounded retry, the only sleep in this module
        await self._start_server()

    def _check_bindable(self) -> None:
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
            for family, stype, proto, _, addr in infos:
                with socket.socket(family, stype, proto) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
                    s.bind(addr)
        except OSError as exc:
            raise self._unavailable() from exc

    def _unavailable(self) -> ResourceUnavailableError:
        return ResourceUnavailableError(
            f"cannot listen on {self.host}:{self.port}: address in use or not available")

    async def _start_server(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("pdm-gateway machine simulator")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await server.register_namespace(self.namespace_uri)
        await self._build(server)
        for nid, dv in self._last.items():  # restore what was published before a restart
            await server.get_node(_nid(nid, self.ns)).write_value(dv)
        try:
            await server.start()
        except OSError as exc:  # Server.start already stopped its internal server
            raise self._unavailable() from exc
        self._server = server

    async def _build(self, server: Server) -> None:
        ns = self.ns
        folder = await server.nodes.objects.add_folder(
            _nid("Machines", ns), _qn("Machines", ns))
        defs: list[_VarDef] = []
        for m, name in zip(self.machines, self.names, strict=True):
            obj = await folder.add_object(_nid(name, ns), _qn(name, ns))
            defs += [
                _VarDef(name, "Temperature", m.temperature_c, ua.VariantType.Double),
                _VarDef(name, "ShaftSpeed", m.spec.shaft_hz, ua.VariantType.Double),
                _VarDef(name, "OverallRms", 0.0, ua.VariantType.Double),
            ]
            for ch, _kind, unit, rate in m.channels:
                cid = f"{name}.{ch}"
                await obj.add_object(_nid(cid, ns), _qn(ch, ns))
                defs += [
                    _VarDef(cid, "Waveform", [], ua.VariantType.Float, array=True),
                    _VarDef(cid, "FirstIndex", 0, ua.VariantType.UInt64),
                    _VarDef(cid, "SampleRate", float(rate), ua.VariantType.Double),
                    _VarDef(cid, "Unit", unit, ua.VariantType.String),
                ]
        for d in defs:
            parent = server.get_node(_nid(d.parent, ns))
            var = await parent.add_variable(
                _nid(f"{d.parent}.{d.name}", ns), _qn(d.name, ns),
                ua.Variant(d.value, d.vtype))
            if d.array:
                await var.write_value_rank(ua.ValueRank.OneDimension)
                await var.write_attribute(AttributeIds.ArrayDimensions, ua.DataValue(
                    ua.Variant([0], ua.VariantType.UInt32)))

    # -- publishing ----------------------------------------------------------------------------
    async def publish(self, index: int, machine: Machine, snap: MachineSnapshot) -> None:
        """Write ``snap`` of machine ``index``: scalars, then per non-empty block ``FirstIndex``
        followed by ``Waveform`` (see the module docstring for timestamps)."""
        origin = self.origin or datetime.now(UTC)
        name = self.names[index]
        scalar_ts = origin + timedelta(seconds=snap.t_real_s)
        writes: list[tuple[str, ua.DataValue]] = [
            (f"{name}.Temperature", _dv(snap.temperature_c, ua.VariantType.Double, scalar_ts)),
            (f"{name}.ShaftSpeed", _dv(snap.shaft_hz, ua.VariantType.Double, scalar_ts)),
        ]
        for b in snap.blocks:
            n = int(b.samples.shape[0])
            if n == 0:
                continue
            ts = origin + timedelta(seconds=b.first_index / b.sample_rate_hz)
            cid = f"{name}.{b.channel}"
            if b.channel == "vib0":
                x = b.samples.astype(np.float64)
                rms = math.sqrt(float(np.dot(x, x)) / n)
                writes.append((f"{name}.OverallRms", _dv(rms, ua.VariantType.Double, scalar_ts)))
            writes.append((f"{cid}.FirstIndex", _dv(b.first_index, ua.VariantType.UInt64, ts)))
            writes.append((f"{cid}.Waveform", _dv(b.samples.tolist(), ua.VariantType.Float, ts)))
        for nid, dv in writes:
            self._last[nid] = dv
        server = self._server
        if server is None:
            return
        for nid, dv in writes:  # local writes (type-checked, server-timestamped), no network
            await server.get_node(_nid(nid, self.ns)).write_value(dv)


def _nid(identifier: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(identifier), ua.Int16(ns))


def _qn(name: str, ns: int) -> ua.QualifiedName:
    return ua.QualifiedName(ua.String(name), ua.Int16(ns))


def _dv(value: object, vtype: ua.VariantType, ts: datetime) -> ua.DataValue:
    """A Good-status value (``StatusCode()`` is Good) with source timestamp ``ts``."""
    return ua.DataValue(ua.Variant(value, vtype), ua.StatusCode(),
                        SourceTimestamp=cast(ua.DateTime, ts))
