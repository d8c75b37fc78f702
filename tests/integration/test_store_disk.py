"""The journal on a really small disk: a tmpfs of 6 MB mounted in a private mount namespace
(``unshare``, no privileges needed). The free-disk watermark holds with alerts kept; a full disk
refuses a batch without damage, and the same batch goes in once there is space again."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_free_disk_watermark_and_a_full_disk_on_a_small_tmpfs(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed"
    mnt = tmp_path / "disk"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs -o size=6m tmpfs {mnt} && "
        f"exec {sys.executable} -m tests.uplink.diskfill {mnt}"
    )
    proc = subprocess.run(
        [unshare, "--map-root-user", "--mount", "sh", "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["disk_bytes"] == 6 << 20  # it ran on the small tmpfs
    w = out["watermark"]
    assert w["min_free"] >= (1 << 20) - (256 << 10)  # about 1 MB kept free (one batch of slack)
    assert w["drops"]["feature"] > 3000  # features went
    assert "alert" not in w["drops"]
    assert w["alerts"] == 250  # every alert kept
    assert w["integrity"] == "ok"
    f = out["full"]
    assert "full" in f["error"]  # SQLITE_FULL: database or disk is full
    assert f["count"] == f["committed"] > 0  # nothing half-written
    assert f["after"] == f["committed"] + 100
    assert f["integrity"] == "ok"
