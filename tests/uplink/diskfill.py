"""Fill a small file system with the journal; run by ``test_store_disk`` inside its own mount
namespace on a tmpfs of a few MB. Prints one JSON object with what happened.

    python -m tests.uplink.diskfill DIR
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

from gateway.store.codec import record_row
from gateway.store.journal import Bounds, Journal
from tests.uplink.records import alert, frame


def main(root: Path) -> dict[str, object]:
    out: dict[str, object] = {"disk_bytes": shutil.disk_usage(root).total}
    # 1. the free-disk watermark: keep 1 MB free, whatever max_bytes says
    j = Journal(root / "w.sqlite", bounds=Bounds(max_bytes=1 << 30, min_free_bytes=1 << 20))
    min_free = shutil.disk_usage(root).free
    for b in range(250):  # ~9 MB of records into a 6 MB disk
        rows = [record_row(frame(i)) for i in range(b * 100, b * 100 + 100)]
        rows.append(record_row(alert(b)))
        j.append(rows)
        min_free = min(min_free, shutil.disk_usage(root).free)
    out["watermark"] = {
        "min_free": min_free,
        "drops": dict(j.drops),
        "alerts": j.count("alert"),
        "integrity": j.integrity_check(),
    }
    j.close()
    for p in root.glob("w.sqlite*"):
        p.unlink()

    # 2. no watermark: the disk really fills up; the journal refuses the batch and stays intact
    ballast = root / "ballast"
    ballast.write_bytes(b"\0" * (512 << 10))
    j = Journal(root / "f.sqlite")
    committed, failures, error = 0, 0, ""
    b = 0
    while failures < 3:
        rows = [record_row(frame(i)) for i in range(b * 100, b * 100 + 100)]
        try:
            j.append(rows)
            committed += len(rows)
            b += 1
        except sqlite3.OperationalError as exc:
            failures += 1
            error = str(exc)
    full = {"committed": committed, "error": error, "count": j.count()}
    ballast.unlink()  # space again: the same batch goes in
    j.append([record_row(frame(i)) for i in range(b * 100, b * 100 + 100)])
    full.update(after=j.count(), integrity=j.integrity_check())
    out["full"] = full
    j.close()
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
