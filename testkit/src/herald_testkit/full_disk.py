"""A real "database or disk is full" for a service's SQLite database, and room again.

``PRAGMA max_page_count`` caps the database at its current size, so the next write that needs a
new page fails with SQLite's own error, as on a full disk; it applies to that connection only,
so it is set on the service's own.
"""

from __future__ import annotations

from herald_shared.db import Database


def fill(db: Database) -> None:
    """The database may not grow past its current size."""
    [(pages,)] = db.connection.execute("PRAGMA page_count").fetchall()
    db.connection.execute(f"PRAGMA max_page_count = {pages}")


def make_room(db: Database) -> None:
    db.connection.execute("PRAGMA max_page_count = 1073741823")
