"""A maintenance window as a service applies it, configured the way an administrator writes it:
a window that covers now mutes the archive (a ``muted`` receipt, no file); one that does not lets
the script log through."""

from __future__ import annotations

from pathlib import Path

from herald_log_archiver.service import SERVICE, build
from herald_log_archiver.settings import LogArchiverSettings
from herald_shared import config, runtime
from herald_shared.settings import BrokerSettings
from herald_testkit.made_events import failure
from herald_testkit.mosquitto import Mosquitto
from herald_testkit.mqtt import Observer
from herald_testkit.services import started
from herald_testkit.subscribers import publish_events, receipts

# Years that contain now, and years long gone: windows that hold, or never do, whenever this runs.
WINDOWS = """\
time_intervals:
  - name: always
    time_intervals: [{years: ["2000:9999"]}]
  - name: long-ago
    time_intervals: [{years: ["1990:1991"], location: Europe/Stockholm}]
"""


async def archive_with(
    tmp_path: Path, routing: str, mosquitto: Mosquitto, broker: BrokerSettings
) -> tuple[str, str | None, list[Path]]:
    """The outcome and detail of one failure's receipt, and the files the archive wrote."""
    folder = tmp_path / routing.replace(" ", "").replace(":", "-")
    folder.mkdir()
    path = folder / "herald.yaml"
    path.write_text(
        WINDOWS + f"log_archiver:\n  directory: {folder / 'logs'}\n  state_dir: {folder}\n"
        f"  {routing}\n"
    )
    document = config.load(path, environ={})
    process = runtime.configure(document, [SERVICE])
    [(_, settings)] = process.services
    assert isinstance(settings, LogArchiverSettings)
    context = runtime.Context(broker, document, time_intervals=process.time_intervals)
    prefix = broker.topic_prefix
    event = failure(1)
    async with (
        Observer(mosquitto.host, mosquitto.port, f"{prefix}/v1/deliveries/#") as observer,
        started(build(settings, context)),
    ):
        await publish_events(mosquitto, prefix, event)
        await observer.wait_for(lambda seen: bool(receipts(seen, prefix, SERVICE.name)))
    [receipt] = receipts(observer.seen, prefix, SERVICE.name)
    written = sorted((folder / "logs").rglob("*.log")) if (folder / "logs").exists() else []
    return receipt.outcome, receipt.detail, written


async def test_a_window_that_covers_now_mutes_and_one_that_does_not_delivers(
    mosquitto: Mosquitto, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    for index, (routing, outcome, detail) in enumerate(
        (
            (
                "mute_during: [always]",
                "muted",
                "muted: inside the time interval always (mute_during)",
            ),
            (
                "active_during: [long-ago]",
                "muted",
                "muted: outside the time intervals long-ago (active_during)",
            ),
            ("mute_during: [long-ago]", "delivered", None),
            ("active_during: [always]", "delivered", None),
        )
    ):
        # A session of its own per run, as every test has (broker_settings' instance).
        instance = f"{broker_settings.topic_prefix}-{index}"
        broker = broker_settings.model_copy(update={"instance": instance})
        got, said, written = await archive_with(tmp_path, routing, mosquitto, broker)
        assert got == outcome, routing
        assert written == [] if outcome == "muted" else len(written) == 1, routing
        if detail is not None:
            assert said == detail
