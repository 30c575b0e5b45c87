"""How each InfluxDB version takes a batch of line protocol: path, query and authorization.

- v1: ``/write?db=&rp=&precision=ns``, optional basic auth; ``CREATE DATABASE`` via ``/query``.
- v2: ``/api/v2/write?org=&bucket=&precision=ns`` with ``Authorization: Token …``.
- v3: ``/api/v3/write_lp?db=&precision=nanosecond`` with ``Authorization: Bearer …``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING

from herald_shared.config import reveal

if TYPE_CHECKING:
    from herald_metrics_writer.destinations.influxdb import InfluxDbSettings


@dataclass(frozen=True)
class WriteEndpoint:
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # authorization included: never logged
    create_database: str | None = None  # v1: the database to create before the first write

    def describe(self) -> str:
        """For logs and receipts: where points go, never how we authenticate."""
        where = ", ".join(f"{key}={value}" for key, value in self.params.items())
        return f"{self.path} ({where})"


def endpoint(settings: InfluxDbSettings) -> WriteEndpoint:
    if settings.version == 1:
        v1 = settings.v1
        params = {"db": v1.database, "precision": "ns"}
        if v1.retention_policy:
            params["rp"] = v1.retention_policy
        headers = {}
        if v1.username is not None:
            credentials = f"{v1.username}:{reveal(v1.password) or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        return WriteEndpoint(
            "/write",
            params,
            headers,
            create_database=v1.database if v1.create_database else None,
        )
    if settings.version == 2:
        v2 = settings.v2
        return WriteEndpoint(
            "/api/v2/write",
            {"org": v2.org, "bucket": v2.bucket, "precision": "ns"},
            {"Authorization": f"Token {reveal(v2.token)}"},
        )
    v3 = settings.v3
    return WriteEndpoint(
        "/api/v3/write_lp",
        {"db": v3.database, "precision": "nanosecond"},
        {"Authorization": f"Bearer {reveal(v3.token)}"},
    )


def create_database_query(database: str) -> str:
    return 'CREATE DATABASE "' + database.replace("\\", "\\\\").replace('"', '\\"') + '"'
