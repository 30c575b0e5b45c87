"""The history's bounds: what is older than the retention, and what is beyond max_events, is
forgotten with everything said about it; the newest stay."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from herald_console.store import EventFilter, Report, Store

from .events_for_tests import failure_now, receipt


def test_the_history_keeps_the_newest_max_events_and_nothing_past_the_retention(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "console.sqlite3", retention=3600, max_events=100)
    made = [failure_now(n) for n in range(150)]
    for n, event in enumerate(made):
        moment = msgspec.structs.replace(
            event, received_at=event.received_at.fromtimestamp(1000.0 + n, event.received_at.tzinfo)
        )
        store.add_event(moment)
        store.add_receipt(
            msgspec.json.decode(receipt(moment, "emailer", "email", "delivered"), type=Report)
        )
    assert store.count() == 150
    assert store.prune(now=1000.0 + 150) == 50
    kept = store.events(EventFilter(), limit=200)
    assert len(kept) == 100
    assert kept[0].event_id == made[149].event_id  # newest first
    assert made[49].event_id not in {row.event_id for row in kept}
    assert store.prune(now=1000.0 + 125 + 3600) == 75  # received more than an hour before
    assert store.count() == 25
    store.close()


def test_a_redelivered_event_is_stored_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "console.sqlite3", retention=3600, max_events=100)
    event = failure_now(1)
    assert store.add_event(event)
    assert not store.add_event(event)
    assert store.count() == 1
    assert store.prune(now=time.time()) == 0
    store.close()
