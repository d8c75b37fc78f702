"""Feature layouts of compact feature rows: a layout's names and units are stored once, in the
journal's ``layouts`` table, and each row holds its values only.

A compact feature payload (what the store writer writes, ``gateway.store.codec.encode_frame``)::

    {"end_ts_ns":E,"gateway_ts_ns":G,"schema":S,"quality":Q,"layout":ID,"values":[v, ...]}

``ID`` is the layout's content hash (``layout_id``: the same names and units always give the
same id, in any process), ``values`` the features in the layout's order (``null`` where a value
could not be computed). Readers get the full payload back (``expand``)::

    {"end_ts_ns":E,"gateway_ts_ns":G,"schema":S,"quality":Q,
     "features":{name: v, ...},"units":{name: unit, ...}}

which is also how feature rows written as ``Row`` objects (and by older versions) are stored.

Layouts are registered in this process (``register``) before any row uses them; the journal
stores those it has not stored yet in the transaction of the next rows it appends, so a row is
never committed without its layout. Registered layouts are never forgotten (a gateway has a
handful); past ``LAYOUTS_MAX`` of them ``register`` declines and rows are stored in full. A store
holding more than ``LAYOUTS_MAX`` layouts (configurations changed over many runs) drops those no
row uses when it is opened (``prune``).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping

import orjson

#: a layout: the feature names and their units, in order
Layout = tuple[tuple[str, ...], tuple[str, ...]]

LAYOUTS_MAX = 4096
LAYOUTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS layouts (
    id TEXT PRIMARY KEY,
    names TEXT NOT NULL,
    units TEXT NOT NULL
) WITHOUT ROWID;
"""

#: every layout registered in this process, by id (only ever added to)
REGISTERED: dict[str, Layout] = {}


def layout_id(names: tuple[str, ...], units: tuple[str, ...]) -> str:
    """The layout's content hash: 16 hex digits (``TypeError``/``orjson.JSONEncodeError`` for
    names or units JSON cannot hold)."""
    return hashlib.blake2b(orjson.dumps([names, units]), digest_size=8).hexdigest()


def register(names: tuple[str, ...], units: tuple[str, ...]) -> str | None:
    """The id of the layout (``names``, ``units``: equal lengths), registered for the journal to
    store; ``None`` if it cannot be (``LAYOUTS_MAX`` reached, or not JSON-encodable): then the
    rows of that layout are stored in full."""
    try:
        key = layout_id(names, units)
    except (TypeError, orjson.JSONEncodeError):
        return None
    if key not in REGISTERED:
        if len(REGISTERED) >= LAYOUTS_MAX:
            return None
        REGISTERED[key] = (tuple(names), tuple(units))
    return key


def rows(layouts: Mapping[str, Layout]) -> list[tuple[str, str, str]]:
    """``layouts`` as rows of the ``layouts`` table: (id, names JSON, units JSON)."""
    return [
        (k, orjson.dumps(n).decode(), orjson.dumps(u).decode()) for k, (n, u) in layouts.items()
    ]


def load(db: sqlite3.Connection) -> dict[str, Layout]:
    """The layouts stored in ``db`` (none in a store without the table)."""
    try:
        got = db.execute("SELECT id, names, units FROM layouts").fetchall()
    except sqlite3.OperationalError:  # (no such table: a store written by an older version)
        return {}
    return {str(k): (tuple(orjson.loads(n)), tuple(orjson.loads(u))) for k, n, u in got}


def prune(db: sqlite3.Connection) -> int:
    """Past ``LAYOUTS_MAX`` stored layouts, delete those no feature row uses any more (a scan of
    the records: rare, at open); returns how many were deleted."""
    (n,) = db.execute("SELECT count(*) FROM layouts").fetchone()
    if n <= LAYOUTS_MAX:
        return 0
    cur = db.execute(
        "DELETE FROM layouts WHERE id NOT IN (SELECT json_extract(payload, '$.layout') "
        "FROM records WHERE kind = 'feature' AND json_valid(payload) "
        "AND json_extract(payload, '$.layout') IS NOT NULL)"
    )
    return int(cur.rowcount)


def expand(payload: dict[str, object], layouts: Mapping[str, Layout]) -> dict[str, object]:
    """A compact feature payload in full (``features`` and ``units`` in place of ``layout`` and
    ``values``); any other payload, or one whose layout is unknown or whose values do not fit
    it, as it is."""
    key, values = payload.get("layout"), payload.get("values")
    if not isinstance(key, str) or not isinstance(values, list):
        return payload
    layout = layouts.get(key)
    if layout is None or len(layout[0]) != len(values):
        return payload
    names, units = layout
    out = {k: v for k, v in payload.items() if k != "layout" and k != "values"}
    out["features"] = dict(zip(names, values, strict=True))
    out["units"] = dict(zip(names, units, strict=True))
    return out
