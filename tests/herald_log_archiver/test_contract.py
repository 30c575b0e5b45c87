"""The script-log archive against the destination contract (``herald_testkit.contract``): a
folder it cannot write is worth another try, and ``when:`` and targets() choose what it keeps."""

from __future__ import annotations

from pathlib import Path

from herald_log_archiver.destinations import archive
from herald_shared import samples
from herald_shared.delivery.destination import Context
from herald_shared.settings import BrokerSettings
from herald_testkit import contract

SAMPLE = samples.sample_failed()
CONTEXT = Context(service=contract.SERVICE, broker=BrokerSettings())


def _archive(directory: Path, **settings: object) -> archive.ArchiveDestination:
    built = archive.destinations(
        archive.ArchiveSettings.model_validate({"directory": str(directory), **settings}), CONTEXT
    )
    [destination] = built
    assert isinstance(destination, archive.ArchiveDestination)
    return destination


async def test_a_folder_that_cannot_be_written_is_transient(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file-where-the-folder-should-be"
    blocked.write_text("")  # a file, not a folder: unwritable even for root
    attempted = await contract.attempt(_archive(blocked), SAMPLE)
    assert attempted.result == "transient"
    assert str(blocked) in attempted.text


async def test_when_selects_the_events_and_each_log_is_one_delivery(tmp_path: Path) -> None:
    destination = _archive(tmp_path / "logs", when=contract.selecting(SAMPLE))
    await contract.check_selection(destination, SAMPLE, [""], tmp_path / "state")
