"""Benchmark: what silences and maintenance windows cost a service per event it takes.

At intake a service works out once per event which active silences match it
(``Quiet.for_event``), then asks for each destination whether it is held back
(``EventQuiet.held``), which also checks the destination's time intervals. This measures that,
in-process, for 0, 10, 100 and 1000 active silences that do not match (the common case: every
one is checked, none silences), each with two criteria (a stream and a task-name pattern), for
an event going to five destinations, two of which have a ``mute_during`` and an
``active_during``. One matching silence is measured too (the event is held back at the first).

Prints microseconds per event for each case.

    uv run python bench/silences.py [--events 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from herald_shared.db import database_for
from herald_shared.delivery.destination import Destination
from herald_shared.delivery.quiet import Quiet
from herald_shared.events import Event
from herald_shared.silences import Matcher, Silence, SilenceBook, new_id
from herald_shared.time_intervals import NamedInterval
from herald_testkit.bench import report
from herald_testkit.made_events import failure

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
INTERVALS = {
    "sunday-maintenance": NamedInterval.model_validate(
        {
            "name": "sunday-maintenance",
            "time_intervals": [
                {
                    "weekdays": ["sunday"],
                    "times": [{"start_time": "02:00", "end_time": "06:00"}],
                    "location": "Europe/Stockholm",
                }
            ],
        }
    ),
    "always": NamedInterval.model_validate(
        {"name": "always", "time_intervals": [{"years": ["2000:2999"]}]}
    ),
}


class Sink(Destination):
    def __init__(self, name: str, *, windows: bool) -> None:
        self.name = name
        if windows:
            self.mute_during = ("sunday-maintenance",)
            self.active_during = ("always",)

    async def deliver(self, event: Event, target: str) -> str | None:
        return None


def silence(n: int, stream: str) -> Silence:
    return Silence(
        id=new_id(),
        matchers=[Matcher("streams", stream), Matcher("task_names", f"Reload job {n} *")],
        starts=NOW - timedelta(hours=1),
        ends=NOW + timedelta(hours=1),
        author="bench",
        comment="bench",
    )


def per_event_us(count: int, *, matching: bool, events: int, work: Path) -> float:
    book = SilenceBook("bench", "bench")
    for n in range(count):
        book.add(silence(n, "Sales"))
    if matching:
        book.add(
            msgspec.structs.replace(silence(0, "Finance"), matchers=[Matcher("streams", "Finance")])
        )
    db = database_for(work, f"bench-{count}-{matching}")
    quiet = Quiet(db, book, INTERVALS)
    destinations = [Sink(f"d{i}", windows=i < 2) for i in range(5)]
    event = failure(1, "Finance")
    now = NOW.timestamp()
    with db.transaction():  # as intake runs it: inside the batch's transaction
        started = time.perf_counter()
        for _ in range(events):
            held = quiet.for_event(event, now)
            for destination in destinations:
                held.held(destination)
        elapsed = time.perf_counter() - started
    db.close()
    return elapsed / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    arguments = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for count in (0, 10, 100, 1000):
            events = max(200, arguments.events // max(1, count // 10))
            figures[f"{count} silences, none matching (us/event)"] = per_event_us(
                count, matching=False, events=events, work=Path(folder)
            )
        figures["100 silences, one matching (us/event)"] = per_event_us(
            100, matching=True, events=arguments.events // 10, work=Path(folder)
        )
    report(figures, arguments.json)


if __name__ == "__main__":
    main()
