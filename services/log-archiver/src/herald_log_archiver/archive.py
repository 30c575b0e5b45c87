"""Script logs on disk in Butler's layout (docs/butler-compatibility.md §4i), written atomically, with retention.

``<directory>/<YYYY-MM-DD>/<YYYY-MM-DD_HH-MM-SS>_appId=<appId>_taskId=<taskId>.log``: the date and
time are the scheduler's own timestamp (the Sense node's local time), so the files line up with
the Sense logs; the content has LF line endings.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from datetime import date, timedelta
from pathlib import Path

from herald_shared.events import Event

_DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOG_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_UNSAFE = re.compile(r"[^A-Za-z0-9-]")
# mkstemp creates 0600; archived logs are for the Qlik administrators and their tools to read,
# as Butler's are (its files are written with the usual 0644).
FILE_MODE = 0o644


def relative_path(event: Event) -> Path:
    """Where ``event``'s script log goes, relative to the archive directory."""
    stamp = event.log_timestamp
    if not _LOG_TIMESTAMP.match(stamp):
        # Events that did not come from a datagram (herald send-test) have only occurred_at.
        stamp = event.occurred_at.strftime("%Y-%m-%d %H:%M:%S")
    day = stamp[:10]
    moment = stamp[:19].replace(" ", "_").replace(":", "-")
    app_id = event.app.id if event.app is not None else ""
    return Path(day) / f"{moment}_appId={_safe(app_id)}_taskId={_safe(event.task.id)}.log"


def _safe(identifier: str) -> str:
    """Qlik ids are GUIDs; anything else must not be able to reach outside the directory."""
    return _UNSAFE.sub("_", identifier)


def content(script_log: str) -> bytes:
    """The log with LF line endings (QRS serves CRLF)."""
    return script_log.replace("\r\n", "\n").encode("utf-8")


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a part; a crash leaves no stray file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, FILE_MODE)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def remove_expired(directory: Path, retention_days: int, today: date) -> list[Path]:
    """Remove day folders older than ``retention_days``; nothing else is ever touched."""
    if retention_days <= 0 or not directory.is_dir():
        return []
    oldest_kept = today - timedelta(days=retention_days)
    removed = []
    for child in sorted(directory.iterdir()):
        # A symbolic link is someone's deliberate arrangement, not an archived day: leave it.
        if child.is_symlink() or not (child.is_dir() and _DAY_FOLDER.match(child.name)):
            continue
        try:
            day = date.fromisoformat(child.name)
        except ValueError:
            continue
        if day < oldest_kept:
            shutil.rmtree(child)
            removed.append(child)
    return removed
