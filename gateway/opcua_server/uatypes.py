"""Typed shorthands for asyncua's wire types (its stubs want its own NewTypes)."""

from __future__ import annotations

import datetime as dt
from typing import cast

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

__all__ = [
    "AttributeIds",
    "ObjectIds",
    "StatusCodes",
    "datavalue",
    "num_id",
    "status",
    "str_id",
]


def num_id(i: int) -> ua.NodeId:
    """A numeric NodeId in namespace 0 (``ObjectIds``)."""
    return ua.NodeId(ua.Int32(i))


def str_id(identifier: str, ns: int) -> ua.NodeId:
    """A string NodeId."""
    return ua.NodeId(ua.String(identifier), ua.Int16(ns))


def status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def datavalue(
    value: ua.Variant | None,
    code: ua.StatusCode,
    source: dt.datetime | None = None,
    server: dt.datetime | None = None,
) -> ua.DataValue:
    """A DataValue with its status and timestamps."""
    return ua.DataValue(
        value, code, cast(ua.DateTime | None, source), cast(ua.DateTime | None, server)
    )
