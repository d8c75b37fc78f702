"""JournalAccess: every reader of new records is woken by every append, whatever the others
do with their own wake-ups."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.store.access import JournalAccess
from gateway.store.codec import record_row
from gateway.store.journal import Journal
from tests.uplink.records import alert


async def test_a_reader_clearing_its_wake_up_never_hides_an_append_from_another(
    tmp_path: Path,
) -> None:
    access = JournalAccess(Journal(tmp_path / "j.sqlite"))
    uplink, escalation = access.appended_event(), access.appended_event()
    await access.call(access.journal.append, [record_row(alert(1))])
    access.notify_appended()
    # the escalation wakes first and clears its event before reading again...
    assert escalation.is_set()
    escalation.clear()
    # ...the uplink, busy with a read queued before the append, still sees it when it waits
    async with asyncio.timeout(60):  # hang guard only
        await uplink.wait()
    assert not escalation.is_set()
    access.notify_appended()
    assert uplink.is_set()
    assert escalation.is_set()
    access.close()
