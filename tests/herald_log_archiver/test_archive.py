"""The archive's pure functions: Butler's path and content (docs/butler-compatibility.md §4i), the atomic write,
and the retention that removes old day folders and nothing else."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import msgspec
import pytest

from herald_log_archiver import archive
from herald_shared import samples

# sample_failed(): log_timestamp "2021-02-16 09:24:59,099", the Sense node's local time.
FAILED_RELATIVE_PATH = Path(
    "2021-02-16/2021-02-16_09-24-59"
    "_appId=e7af59a0-c243-480d-9571-08727551a66f"
    "_taskId=dec2a02a-1680-44ef-8dc2-e2bfb180af87.log"
)

# The sample's script log as Butler writes it: the QRS lines joined with LF, no trailing newline.
FAILED_CONTENT = (
    b"20210216T092440.000+0100 Execution started.\n"
    b"20210216T092440.000+0100 Qlik Sense Server Version 14.20.5\n"
    b"20210216T092440.000+0100 CPU Target                    x64\n"
    b"20210216T092440.000+0100 Operating System              Windows Server 2019 Standard\n"
    b"20210216T092440.000+0100 Reload Executed By            UserDirectory=INTERNAL; UserId=sa_scheduler\n"
    b"20210216T092440.000+0100 Process ID                    6868\n"
    b"20210216T092441.000+0100 0002  SET ThousandSep=',';\n"
    b"20210216T092441.000+0100 0003  SET DecimalSep='.';\n"
    b"20210216T092441.000+0100 0012  Sales:\n"
    b"20210216T092441.000+0100 0013  LOAD * FROM [lib://Data/sales_2021.qvd] (qvd)\n"
    b"20210216T092459.000+0100      Error: Cannot open file: 'lib://Data/sales_2021.qvd'\n"
    b"20210216T092459.000+0100      Path not found: \\\\fileserver\\qlik\\data\\sales_2021.qvd\n"
    b"20210216T092459.000+0100 Execution Failed\n"
    b"20210216T092459.000+0100 Execution finished."
)


# --- relative_path -------------------------------------------------------------------------


def test_a_failed_reload_goes_to_its_day_folder_under_butlers_file_name() -> None:
    assert archive.relative_path(samples.sample_failed()) == FAILED_RELATIVE_PATH


def test_the_aborted_sample_is_named_from_its_own_scheduler_timestamp() -> None:
    assert archive.relative_path(samples.sample_aborted()) == Path(
        "2024-10-10/2024-10-10_15-35-25"
        "_appId=e7af59a0-c243-480d-9571-08727551a66f"
        "_taskId=dec2a02a-1680-44ef-8dc2-e2bfb180af87.log"
    )


def test_the_scheduler_timestamp_wins_over_occurred_at() -> None:
    # occurred_at is 08:24:59 UTC; the file carries the node's local 09:24:59, like the Sense logs.
    event = samples.sample_failed()
    assert event.occurred_at.hour == 8
    assert archive.relative_path(event).name.startswith("2021-02-16_09-24-59_")


def test_a_task_without_an_app_has_an_empty_app_id() -> None:
    failed = samples.sample_failed()
    event = msgspec.structs.replace(
        failed, app=None, task=msgspec.structs.replace(failed.task, type="external_program")
    )
    assert archive.relative_path(event) == Path(
        "2021-02-16/2021-02-16_09-24-59_appId=_taskId=dec2a02a-1680-44ef-8dc2-e2bfb180af87.log"
    )


@pytest.mark.parametrize("log_timestamp", ["", "not a timestamp", "16/02/2021 09:24:59"])
def test_an_event_without_a_datagram_timestamp_falls_back_to_occurred_at(
    log_timestamp: str,
) -> None:
    event = msgspec.structs.replace(
        samples.sample_failed(),
        log_timestamp=log_timestamp,
        occurred_at=datetime(2024, 3, 5, 7, 8, 9, 123_000, tzinfo=UTC),
    )
    assert archive.relative_path(event) == Path(
        "2024-03-05/2024-03-05_07-08-09"
        "_appId=e7af59a0-c243-480d-9571-08727551a66f"
        "_taskId=dec2a02a-1680-44ef-8dc2-e2bfb180af87.log"
    )


# --- content -------------------------------------------------------------------------------


def test_the_sample_log_is_written_with_lf_line_endings() -> None:
    script_log = samples.sample_failed().script_log
    assert script_log is not None
    assert script_log.full_text is not None
    assert "\r\n" in script_log.full_text  # the QRS serves CRLF
    assert archive.content(script_log.full_text) == FAILED_CONTENT


def test_crlf_becomes_lf_and_everything_else_is_kept() -> None:
    assert archive.content("one\r\ntwo\r\n\r\nthree\r\n") == b"one\ntwo\n\nthree\n"
    assert archive.content("already\nunix\n") == b"already\nunix\n"
    assert archive.content("Göran\r\n") == "Göran\n".encode()


# --- write_atomically ----------------------------------------------------------------------


def test_write_atomically_creates_the_day_folder_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / FAILED_RELATIVE_PATH
    archive.write_atomically(path, FAILED_CONTENT)
    assert path.read_bytes() == FAILED_CONTENT
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == [
        FAILED_RELATIVE_PATH.parent,
        FAILED_RELATIVE_PATH,
    ]


def test_write_atomically_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / FAILED_RELATIVE_PATH
    path.parent.mkdir(parents=True)
    path.write_bytes(b"an older, longer log from an earlier run\n" * 100)
    archive.write_atomically(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert list(path.parent.iterdir()) == [path]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "2021-02-16" / "taken.log"
    path.mkdir(parents=True)  # a directory where the file should go: the rename fails
    with pytest.raises(OSError):  # noqa: PT011 - the platform decides which subclass
        archive.write_atomically(path, b"data")
    assert list(path.parent.iterdir()) == [path]
    assert list(path.iterdir()) == []


# --- remove_expired ------------------------------------------------------------------------

TODAY = date(2024, 10, 20)


def _populate(directory: Path) -> None:
    for day in ["2024-10-20", "2024-10-19", "2024-10-13", "2024-10-12", "2023-01-01"]:
        (directory / day).mkdir(parents=True)
        (directory / day / f"{day}_00-00-00_appId=a_taskId=t.log").write_text("log\n")
    (directory / "2024-10-12" / "nested").mkdir()
    (directory / "notes").mkdir()
    (directory / "notes" / "2020-01-01.txt").write_text("kept\n")
    (directory / "README.txt").write_text("kept\n")
    (directory / "2024-13-45").mkdir()  # looks like a day but is not a date
    (directory / "2019-01-01.old").mkdir()
    (directory / "2019-01-01").write_text("a regular file with a day's name\n")


def _tree(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*")}


def test_remove_expired_removes_only_day_folders_older_than_the_retention(
    tmp_path: Path,
) -> None:
    _populate(tmp_path)
    before = _tree(tmp_path)

    removed = archive.remove_expired(tmp_path, 7, TODAY)

    assert sorted(removed) == [tmp_path / "2023-01-01", tmp_path / "2024-10-12"]
    gone = {
        "2023-01-01",
        "2023-01-01/2023-01-01_00-00-00_appId=a_taskId=t.log",
        "2024-10-12",
        "2024-10-12/2024-10-12_00-00-00_appId=a_taskId=t.log",
        "2024-10-12/nested",
    }
    assert _tree(tmp_path) == before - gone
    # Today's, yesterday's and the one exactly seven days old stay; so does everything else.
    for kept in ["2024-10-20", "2024-10-19", "2024-10-13", "notes", "2024-13-45"]:
        assert (tmp_path / kept).is_dir()
    assert (tmp_path / "README.txt").read_text() == "kept\n"
    assert (tmp_path / "notes" / "2020-01-01.txt").is_file()
    assert (tmp_path / "2019-01-01").is_file()
    assert (tmp_path / "2019-01-01.old").is_dir()


def test_a_future_day_folder_is_kept(tmp_path: Path) -> None:
    (tmp_path / "2024-10-21").mkdir()
    assert archive.remove_expired(tmp_path, 1, TODAY) == []
    assert (tmp_path / "2024-10-21").is_dir()


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    _populate(tmp_path)
    before = _tree(tmp_path)
    assert archive.remove_expired(tmp_path, 0, TODAY) == []
    assert _tree(tmp_path) == before


def test_a_missing_archive_directory_is_not_an_error(tmp_path: Path) -> None:
    assert archive.remove_expired(tmp_path / "not-yet", 7, TODAY) == []
    assert not (tmp_path / "not-yet").exists()


def test_remove_expired_is_idempotent(tmp_path: Path) -> None:
    _populate(tmp_path)
    archive.remove_expired(tmp_path, 7, TODAY)
    after = _tree(tmp_path)
    assert archive.remove_expired(tmp_path, 7, TODAY) == []
    assert _tree(tmp_path) == after
