"""The service's local SQLite database: durable state that must outlive the process.

WAL with ``synchronous=NORMAL``: a commit is in the operating system's hands before it
returns, so a killed process (SIGKILL, OOM) loses nothing committed; only a power loss can take
the last commits. Every statement is short and runs on the event loop thread: a thread hop
would cost more than the statements themselves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Database", "database_for"]


class Database:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute("PRAGMA busy_timeout=5000")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; nested use joins the outer transaction."""
        if self.connection.in_transaction:
            yield self.connection
            return
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            # SQLite has already rolled back on some errors ("database or disk is full").
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def execute_script(self, script: str) -> None:
        self.connection.executescript(script)

    def close(self) -> None:
        self.connection.close()


def database_for(state_dir: Path, service: str) -> Database:
    return Database(state_dir / f"{service}.sqlite3")
