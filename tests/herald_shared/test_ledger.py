"""The delivery ledger on a real SQLite file: what survives a restart, what is forgotten when.

Each test closes and reopens the database file where a restart matters, as a service does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from herald_shared.db import Database
from herald_shared.delivery.ledger import Job, Ledger

DAY = 86400.0
RETENTION = 7 * DAY


class Files:
    """The ledger of one service's database file, reopened on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = Database(path)
        self.ledger = Ledger(self.db)

    def reopen(self) -> Ledger:
        self.db.close()
        self.db = Database(self.path)
        self.ledger = Ledger(self.db)
        return self.ledger


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Files]:
    opened = Files(tmp_path / "state" / "svc.sqlite3")
    yield opened
    opened.db.close()


def job(event_id: str, destination: str = "relay", target: str = "", at: float = 1000.0) -> Job:
    return Job(event_id, destination, target, received_at=at, next_attempt_at=at)


def take(files: Files, *jobs: Job, now: float = 1000.0) -> None:
    """Store jobs as the intake does: in one transaction, each event with its payload."""
    with files.db.transaction():
        for each in jobs:
            files.ledger.store_event(each.event_id, f"payload of {each.event_id}".encode())
            files.ledger.add(each, "pending", now=now)


def test_pending_deliveries_come_back_after_a_restart_in_the_order_they_arrived(
    files: Files,
) -> None:
    # One batch shares one arrival time; names sort differently from the arrival order.
    take(files, *(job(name) for name in ("c", "a", "d", "b")), now=1000.0)
    take(files, job("0", at=1001.0), now=1001.0)
    resumed = list(files.reopen().pending())
    assert [j.event_id for j in resumed] == ["c", "a", "d", "b", "0"]
    assert files.ledger.event_payload("d") == b"payload of d"


def test_a_rescheduled_delivery_resumes_with_its_attempts_and_its_next_time(
    files: Files,
) -> None:
    pending = job("e1")
    take(files, pending)
    pending.attempts, pending.first_attempt_at, pending.next_attempt_at = 3, 1000.5, 1030.0
    files.ledger.reschedule(pending, "HTTP 503 from the relay")
    [resumed] = files.reopen().pending()
    assert (resumed.attempts, resumed.first_attempt_at, resumed.next_attempt_at) == (
        3,
        1000.5,
        1030.0,
    )


def test_a_delivered_event_is_known_for_the_retention_and_forgotten_after_it(
    files: Files,
) -> None:
    delivered = job("e1", target="ops@example.com")
    take(files, delivered)
    assert files.ledger.finish(delivered, "delivered", 1000.0, "250 OK") is True
    ledger = files.reopen()
    late = 1000.0 + RETENTION - 1
    assert ledger.purge(late - RETENTION, late) == 0
    assert ledger.knows("e1")  # a redelivery now is not delivered again
    assert ledger.state_of("e1", "relay", "ops@example.com") == "delivered"
    later = 1000.0 + RETENTION + 1
    assert ledger.purge(later - RETENTION, later) == 1
    assert not ledger.knows("e1")


def test_an_event_payload_is_kept_while_any_of_its_deliveries_is_pending(files: Files) -> None:
    mail, chat = job("e1", "mail"), job("e1", "chat")
    take(files, mail, chat)
    assert files.ledger.finish(mail, "delivered", 1001.0, None) is False
    assert files.reopen().event_payload("e1") == b"payload of e1"
    assert files.ledger.finish(chat, "delivered", 1002.0, None) is True
    assert files.ledger.event_payload("e1") is None
    assert files.ledger.knows("e1")  # the payload goes, the dedup record stays


def test_a_dead_letters_payload_is_kept_for_a_replay_until_the_purge_forgets_it(
    files: Files,
) -> None:
    mail, chat = job("e1", "mail"), job("e1", "chat")
    take(files, mail, chat)
    files.ledger.finish(mail, "delivered", 1001.0, None)
    assert files.ledger.finish(chat, "dead_lettered", 1002.0, "HTTP 404") is True
    ledger = files.reopen()
    assert ledger.event_payload("e1") == b"payload of e1"
    assert [(j.event_id, j.destination) for j in ledger.dead_letters([], None, None)] == [
        ("e1", "chat")
    ]
    later = 1002.0 + RETENTION + 1
    assert ledger.purge(later - RETENTION, later) == 2
    assert ledger.event_payload("e1") is None
    assert ledger.dead_letters(["e1"], None, None) == []


def test_dead_letters_are_chosen_by_event_destination_and_time(files: Files) -> None:
    early, late, other = job("e1", "mail"), job("e2", "mail"), job("e2", "chat")
    take(files, early, late, other)
    files.ledger.finish(early, "dead_lettered", 1000.0, "HTTP 500")
    files.ledger.finish(late, "dead_lettered", 2000.0, "HTTP 500")
    files.ledger.finish(other, "delivered", 2000.0, None)

    def chosen(ids: list[str], destination: str | None, since: float | None) -> list[str]:
        found = files.ledger.dead_letters(ids, destination, since)
        return [f"{j.event_id}/{j.destination}" for j in found]

    assert chosen([], None, None) == ["e1/mail", "e2/mail"]
    assert chosen(["e2"], None, None) == ["e2/mail"]  # its delivered one is no dead letter
    assert chosen([], "chat", None) == []
    assert chosen([], None, 2000.0) == ["e2/mail"]  # at or after
    assert chosen(["e1"], "mail", 1500.0) == []  # every criterion must hold


def test_a_replayed_dead_letter_is_pending_afresh_and_survives_a_restart(files: Files) -> None:
    letter = job("e1", target="ops@example.com")
    take(files, letter)
    letter.attempts, letter.first_attempt_at = 4, 1000.5
    files.ledger.finish(letter, "dead_lettered", 1100.0, "gave up after 4 attempts")
    [chosen] = files.ledger.dead_letters(["e1"], None, None)
    assert files.ledger.replay(chosen, now=5000.0) is True
    assert files.ledger.replay(chosen, now=5001.0) is False  # no longer dead-lettered
    [resumed] = files.reopen().pending()
    assert (resumed.event_id, resumed.target, resumed.attempts) == ("e1", "ops@example.com", 0)
    assert (resumed.received_at, resumed.next_attempt_at, resumed.first_attempt_at) == (
        5000.0,
        5000.0,
        None,
    )
    assert files.ledger.event_payload("e1") == b"payload of e1"


def test_the_purge_removes_only_finished_deliveries_past_the_retention(files: Files) -> None:
    old_pending, old_done, recent_done = job("old-p"), job("old-d"), job("new-d", at=5 * DAY)
    take(files, old_pending, old_done)
    take(files, recent_done, now=5 * DAY)
    files.ledger.finish(old_done, "suppressed", 1000.0, "rate limit")
    files.ledger.finish(recent_done, "delivered", 5 * DAY, None)
    now = 1000.0 + RETENTION + 1
    assert files.ledger.purge(now - RETENTION, now) == 1
    ledger = files.reopen()
    assert [j.event_id for j in ledger.pending()] == ["old-p"]  # however old, never forgotten
    assert ledger.state_of("new-d", "relay") == "delivered"
    assert ledger.state_of("old-d", "relay") is None


def test_the_purge_forgets_only_rate_windows_that_have_ended(files: Files) -> None:
    assert files.ledger.take_rate_slot("mail|task-1", 600, now=1000.0)
    assert files.ledger.take_rate_slot("mail|task-2", 600, now=1500.0)
    files.ledger.purge(0.0, now=1700.0)  # task-1's window ended at 1600, task-2's runs to 2100
    ledger = files.reopen()
    assert ledger.take_rate_slot("mail|task-1", 600, now=1700.0)
    assert not ledger.take_rate_slot("mail|task-2", 600, now=1700.0)


def test_a_rate_window_survives_a_restart(files: Files) -> None:
    assert files.ledger.take_rate_slot("mail|task-1", 600, now=1000.0)
    ledger = files.reopen()
    assert not ledger.take_rate_slot("mail|task-1", 600, now=1599.0)
    assert ledger.take_rate_slot("mail|task-1", 600, now=1600.0)


def test_a_clock_stepped_back_across_a_restart_does_not_extend_a_rate_window(
    files: Files,
) -> None:
    assert files.ledger.take_rate_slot("mail|task-1", 600, now=10_000.0)  # window to 10 600
    ledger = files.reopen()
    stepped_back = 10_000.0 - 3600  # the clock now reads an hour earlier
    assert not ledger.take_rate_slot("mail|task-1", 600, now=stepped_back)
    # One window after the step, by the clock as it now reads, the next message goes.
    assert files.reopen().take_rate_slot("mail|task-1", 600, now=stepped_back + 600)


def test_dead_letters_are_found_among_more_ids_than_sqlite_takes_in_one_statement(
    files: Files,
) -> None:
    letters = [job(f"e{n:05d}", at=1000.0 + n) for n in range(1200)]
    take(files, *letters)
    with files.db.transaction():
        for n, letter in enumerate(letters):
            files.ledger.finish(letter, "dead_lettered", 2000.0 - n, "HTTP 500")
    asked = [f"e{n:05d}" for n in range(0, 1200, 3)] + [f"other-{n}" for n in range(40_000)]
    found = files.ledger.dead_letters(asked, None, None)
    assert [j.event_id for j in found] == sorted(asked[:400], reverse=True)  # oldest first
