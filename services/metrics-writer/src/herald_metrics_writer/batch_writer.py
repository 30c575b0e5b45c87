"""Points to InfluxDB in batches; each caller returns only once its batch is stored.

A delivery hands its point to :meth:`BatchWriter.write` and waits: the batch goes out when it
has ``batch_size`` points or ``flush_interval`` after its first, as one request on a kept-alive
connection. The write's outcome becomes every waiting delivery's outcome, so the runner's
"delivered" receipt means "in InfluxDB", and a failed write is retried by the runner like any
other delivery: nothing is lost while InfluxDB is down. A retried point is written again with the
same measurement, tags and time, which InfluxDB treats as the same point (it overwrites it), so
nothing is doubled either.

One unwritable point must not sink its neighbours: when InfluxDB rejects a batch as malformed
(400, 413) the points are written one by one, so only the bad one fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from herald_metrics_writer import metrics
from herald_metrics_writer.influx_api import WriteEndpoint, create_database_query, endpoint
from herald_shared.config import secret_values
from herald_shared.delivery.destination import PermanentError, TransientError
from herald_shared.delivery.http import Request, send
from herald_shared.http_client import HttpClient
from herald_shared.tls import client_context

if TYPE_CHECKING:
    from herald_metrics_writer.destinations.influxdb import InfluxDbSettings

log = logging.getLogger(__name__)

_SPLIT_STATUSES = frozenset({400, 413})

_Waiter = tuple[str, "asyncio.Future[None]"]


class BatchWriter:
    def __init__(self, settings: InfluxDbSettings, service: str) -> None:
        self._settings = settings
        self._endpoint: WriteEndpoint = endpoint(settings)
        self._pending: list[_Waiter] = []
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        # What InfluxDB could echo back: tokens, the v1 password, the Authorization header.
        self._secrets = [*secret_values(settings), *self._endpoint.headers.values()]
        self._client = HttpClient(
            timeout=settings.timeout,
            tls=client_context(ca_file=settings.ca_file, verify=settings.verify),
            headers=self._endpoint.headers,
            connections=4,
            secrets=self._secrets,
        )
        self._base = str(settings.url).rstrip("/")
        self._database_ready = self._endpoint.create_database is None
        self._writes = {
            result: metrics.INFLUX_WRITES.labels(service=service, result=result)
            for result in ("ok", "transient_error", "permanent_error")
        }
        self._points = metrics.INFLUX_POINTS.labels(service=service)
        self._buffered = metrics.INFLUX_BUFFERED.labels(service=service)

    @property
    def describe(self) -> str:
        return f"InfluxDB v{self._settings.version} {self._endpoint.describe()}"

    async def start(self) -> None:
        if not self._database_ready:
            try:
                await self._create_database()
            except TransientError as error:
                # InfluxDB may come up after us; the first write tries again.
                log.warning("cannot create the InfluxDB database yet: %s", error.reason)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._fail_pending(TransientError("the writer is stopping"))
        for task in list(self._sending):
            task.cancel()
        await self._client.close()

    async def write(self, line: str) -> None:
        """Return once ``line`` is stored; TransientError/PermanentError when it is not."""
        if len(self._pending) + self._in_flight >= self._settings.max_buffered:
            raise TransientError(
                f"{self._settings.max_buffered} points already wait for InfluxDB; try later"
            )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((line, done))
        self._buffered.set(len(self._pending) + self._in_flight)
        if len(self._pending) >= self._settings.batch_size:
            self._send_pending()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self._settings.flush_interval, self._send_pending
            )
        # shield: a delivery that times out must not cancel its batch for the others.
        await asyncio.shield(done)

    def _send_pending(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._in_flight += len(batch)
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: Sequence[_Waiter]) -> None:
        try:
            await self._write_resolving(batch)
        except asyncio.CancelledError:
            _resolve(batch, TransientError("the writer stopped before InfluxDB answered"))
            raise
        except Exception as error:  # a bug here must not leave deliveries waiting forever
            log.exception("writing a batch to InfluxDB failed unexpectedly")
            _resolve(batch, TransientError(f"unexpected error: {error!r}"))
        finally:
            self._in_flight -= len(batch)
            self._buffered.set(len(self._pending) + self._in_flight)

    async def _write_resolving(self, batch: Sequence[_Waiter]) -> None:
        try:
            await self._post("\n".join(line for line, _ in batch))
        except PermanentError as error:
            if len(batch) > 1 and error.status in _SPLIT_STATUSES:
                log.warning(
                    "InfluxDB rejected a batch of %d points (%s); writing them one by one",
                    len(batch),
                    error.reason,
                )
                await asyncio.gather(*(self._write_resolving([waiter]) for waiter in batch))
                return
            _resolve(batch, error)
        except TransientError as error:
            _resolve(batch, error)
        else:
            self._points.inc(len(batch))
            _resolve(batch, None)

    async def _post(self, body: str) -> None:
        if not self._database_ready:
            await self._create_database()
        path, params = self._endpoint.path, self._endpoint.params
        await self._send_counted(
            Request("POST", self._base + path, body=body.encode(), params=params)
        )

    async def _send_counted(self, request: Request, what: str = "") -> None:
        try:
            await send(self._client, request, what=what or self.describe, secrets=self._secrets)
        except TransientError:
            self._writes["transient_error"].inc()
            raise
        except PermanentError:
            self._writes["permanent_error"].inc()
            raise
        self._writes["ok"].inc()

    async def _create_database(self) -> None:
        database = self._endpoint.create_database
        assert database is not None, "only v1 creates its database"
        query = {"q": create_database_query(database)}
        try:
            what = f"InfluxDB v1 /query (CREATE DATABASE {database})"
            await self._send_counted(Request("POST", self._base + "/query", params=query), what)
        except TransientError as error:
            raise TransientError(f"creating database {database}: {error.reason}") from None
        except PermanentError as error:
            # A user that may only write is refused CREATE DATABASE (403) although the
            # database an administrator made is there: the writes will say whether it is.
            log.warning(
                "InfluxDB refused CREATE DATABASE %s (%s); writing to it anyway. If it does not"
                " exist, create it as an administrator; to stop asking, set"
                " metrics_writer.influxdb.v1.create_database: false",
                database,
                error.reason,
            )
        else:
            log.info("InfluxDB database %s exists", database)
        self._database_ready = True

    def _fail_pending(self, error: Exception) -> None:
        batch, self._pending = self._pending, []
        _resolve(batch, error)


def _resolve(batch: Sequence[_Waiter], error: Exception | None) -> None:
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
            # Nobody may be awaiting any more (a delivery that timed out): marking the error
            # retrieved keeps asyncio from warning "exception was never retrieved".
            done.exception()
