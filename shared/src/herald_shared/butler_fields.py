"""Butler's template field names, built from a Herald event, so Butler's templates keep working.

Every e-mail, Slack and Teams template sees these camelCase names next to Herald's own
snake_case ones (docs/templates.md lists both, docs/butler-compatibility.md §3.2 gives Butler's
meaning of each). As in Butler, a value the event does not carry is the empty string (Handlebars
rendered a missing field as nothing), never ``None``, so a converted template prints the same.

Times come in Butler's five local formats (``startTimeLocal1..5``, ``stopTimeLocal1..5``,
``timestampLocal1..5``) in the site's time zone: a destination's ``timezone``, else
``qlik.timezone`` (:func:`site_zone`), else this host's zone, as Butler did. ``Local2``-``Local5`` are Luxon's en-US formats; ``Local5`` equals ``Local4``, as in
Butler (https://github.com/ptarmiganlabs/butler/blob/master/src/qrs_util/reload_task_execution_results.js).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

from herald_shared.events import Event, ExecutionDetail

__all__ = [
    "TimeZoneName",
    "butler_fields",
    "handlebars_text",
    "local_time",
    "local_times",
    "site_zone",
    "zone",
]


def _known_zone(name: str | None) -> str | None:
    if name is not None:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{name!r} is not an IANA time zone name (e.g. Europe/Stockholm, UTC)"
            ) from None
    return name


#: A configuration key holding an IANA time zone name; None: the site's (see :func:`site_zone`).
TimeZoneName = Annotated[str | None, AfterValidator(_known_zone)]


def site_zone(document: Mapping[str, Any], own: str | None) -> str | None:
    """A destination's time zone: its own, else ``qlik.timezone``, else None (this host's)."""
    if own is not None:
        return own
    qlik = document.get("qlik")
    name = qlik.get("timezone") if isinstance(qlik, dict) else None
    try:
        return _known_zone(str(name)) if name else None
    except ValueError:
        # A misspelt qlik.timezone is reported once, by the preflight (herald_shared.preflight),
        # with its file and key; reported here too, every service would say it again.
        return None


def zone(name: str | None) -> tzinfo | None:
    return ZoneInfo(name) if name else None


def _clock(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment:%M:%S} {'AM' if moment.hour < 12 else 'PM'}"


# The zone abbreviations Luxon's en-US DATETIME_FULL prints (ICU's data through Node's Intl), with
# the UTC offset each stands for there; any other zone is shown as its offset, "GMT+1",
# "GMT-3:30". Compared with Node 20 (Luxon 3) for every IANA zone as the host's, in February and
# in July.
_EN_US_ABBREVIATIONS = {
    "EST": -300,
    "EDT": -240,
    "CST": -360,
    "CDT": -300,
    "MST": -420,
    "MDT": -360,
    "PST": -480,
    "PDT": -420,
    "AKST": -540,
    "AKDT": -480,
    "HST": -600,
    "HDT": -540,
    "AST": -240,
    "ADT": -180,
    "GMT": 0,
    "UTC": 0,
}
_OFFSET_ONLY: tuple[str, ...] = ("America/Chihuahua", "America/Ciudad_Juarez", "America/Dawson")
_OFFSET_ONLY += ("America/Hermosillo", "America/Mazatlan", "America/Whitehorse")
# Zones whose abbreviation en-US does not use ("": their offset instead) or spells otherwise.
_EN_US_OWN: dict[str, dict[str, str]] = {
    "America/Adak": {"HST": "HAST", "HDT": "HADT"},
    "Antarctica/Troll": {"+00": "GMT"},
    **{key: {"MST": "", "MDT": ""} for key in _OFFSET_ONLY},
}


def _zone_name(moment: datetime) -> str:
    """The zone as Luxon's en-US long formats end it: ``EST``, ``UTC``, ``GMT+1``, ``GMT+5:30``."""
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    abbreviation = moment.tzname() or ""
    own = _EN_US_OWN.get(getattr(moment.tzinfo, "key", ""), {})
    if abbreviation in own:
        abbreviation = own[abbreviation]
    elif _EN_US_ABBREVIATIONS.get(abbreviation) != minutes:
        abbreviation = ""
    if abbreviation:
        return abbreviation
    hours, rest = divmod(abs(minutes), 60)
    return f"GMT{'-' if minutes < 0 else '+'}{hours}" + (f":{rest:02d}" if rest else "")


def local_times(value: datetime | None, prefix: str, zone: tzinfo | None) -> dict[str, str]:
    """``<prefix>UTC`` and ``<prefix>Local1..5``; all ``-`` when the time is unknown (Butler's
    rendering of the QRS's 1753 placeholder)."""
    if value is None:
        return {f"{prefix}UTC": "-", **{f"{prefix}Local{n}": "-" for n in range(1, 6)}}
    moment = value.astimezone(zone) if zone is not None else value.astimezone()
    full = f"{moment:%B} {moment.day}, {moment.year} at {_clock(moment)} {_zone_name(moment)}"
    return {
        f"{prefix}UTC": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{value.microsecond // 1000:03d}Z",
        f"{prefix}Local1": moment.strftime("%Y-%m-%d %H:%M:%S"),
        f"{prefix}Local2": f"{moment.month}/{moment.day}/{moment.year}, {_clock(moment)}",
        f"{prefix}Local3": f"{moment:%b} {moment.day}, {moment.year}, {_clock(moment)}",
        f"{prefix}Local4": full,
        f"{prefix}Local5": full,
    }


def _parse(value: object) -> datetime | None:
    """A time as the contexts carry it: a datetime, Butler's ISO text or Herald's ``… UTC``."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value or "").strip()
    if not text or text == "-" or text == "Never":
        return None
    text = text.removesuffix(" UTC").replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def local_time(value: object, pattern: str, zone_name: str | None) -> str:
    """What the ``local_time`` template filter shows: a time field in ``zone_name`` (None or "":
    this host's), as ``pattern`` (strftime) says; a value it cannot read as a time stays as it is.
    The template environments pass the context's ``site_timezone``."""
    moment = _parse(value)
    if moment is None:
        return "" if value is None else str(value)
    return moment.astimezone(zone(zone_name or None)).strftime(pattern)


def handlebars_text(value: object) -> object:
    """A value as ``{{x}}`` prints it: Handlebars shows JavaScript's ``true``/``false`` where
    Jinja2 would show ``True``/``False`` (``taskIsManuallyTriggered``, ``appPublished``), so the
    template environments use this as Jinja2's ``finalize``; the value stays a boolean for
    ``{% if %}``. Anything else is printed as Jinja2 prints it."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


def _text(value: object) -> Any:
    return "" if value is None else value


def _duration(milliseconds: int | None) -> dict[str, Any]:
    if milliseconds is None:
        return {"hours": "", "minutes": "", "seconds": ""}
    hours, rest = divmod(milliseconds // 1000, 3600)
    minutes, seconds = divmod(rest, 60)
    return {"hours": hours, "minutes": minutes, "seconds": seconds}


def _pairs(properties: dict[str, list[str]]) -> list[dict[str, str]]:
    return [
        {"name": name, "value": value} for name, values in properties.items() for value in values
    ]


def _detail(detail: ExecutionDetail, zone: tzinfo | None) -> _Lazy:
    return _Lazy(
        (*_time_keys("timestamp"), "detailsType", "message"),
        lambda: {
            **local_times(detail.at, "timestamp", zone),
            "detailsType": _text(detail.detail_type),
            "message": detail.message,
        },
    )


def _concatenated(details: list[ExecutionDetail]) -> str:
    return "".join(f"{_iso(row.at) or '-'}\t{row.message}\n" for row in details)


def butler_fields(event: Event, zone: tzinfo | None = None) -> dict[str, Any]:
    """The fields Butler's reload templates use, for this event."""
    task, app, execution, links = event.task, event.app, event.execution, event.links
    owner = app.owner if app is not None else None
    log = event.script_log
    head = "\n".join(log.head) if log else ""
    tail = "\n".join(log.tail) if log else ""
    full = log.full_text if log is not None and log.full_text is not None else ""
    return {
        # Not Butler's: the zone these local times are in ("" for this host's), which the
        # local_time filter reads.
        "site_timezone": getattr(zone, "key", "") if zone is not None else "",
        "hostName": event.sense_host,
        "user": event.user,
        "taskName": task.name,
        "taskId": task.id,
        "taskTags": list(task.tags),
        "taskCustomProperties": _pairs(task.custom_properties),
        "taskIsManuallyTriggered": _text(task.manually_triggered),
        "taskIsPartialReload": _text(task.partial_reload),
        "taskMaxRetries": _text(task.max_retries),
        "taskModifiedByUsername": _text(task.modified_by),
        "taskModifiedDate": _iso(task.modified_at),
        "taskSessionTimeout": _text(task.session_timeout_minutes),
        "taskNextExecution": _iso(task.next_execution) or "Never",
        "appName": app.name if app else "",
        "appId": app.id if app else "",
        "appUrl": _text(links.app),
        "appDescription": app.description if app else "",
        "appFileSize": _text(app.file_size) if app else "",
        "appLastSuccessfulReload": _iso(app.last_reload) if app else "",
        "appLastModifiedDate": _iso(app.modified_at) if app else "",
        "appLastModifiedByUserName": _text(app.modified_by) if app else "",
        "appPublishTime": _iso(app.publish_time) if app else "",
        "appPublished": _text(app.published) if app else "",
        "appStreamName": app.stream.name if app and app.stream else "",
        "appTags": list(app.tags) if app else [],
        "appCustomProperties": _pairs(app.custom_properties) if app else [],
        "appOwnerName": owner.name if owner else "",
        "appOwnerUserId": owner.user_id if owner else "",
        "appOwnerUserDirectory": owner.directory if owner else "",
        "appOwnerEmail": owner.emails[0] if owner and owner.emails else "",
        "logTimeStamp": event.log_timestamp,
        "logLevel": event.log_level,
        "logMessage": event.log_message,
        "executionId": execution.id,
        "executingNodeName": _text(execution.node),
        "executionDuration": _duration(execution.duration_ms),
        "executionStartTime": _lazy_times(execution.started_at, "startTime", zone),
        "executionStopTime": _lazy_times(execution.stopped_at, "stopTime", zone),
        "executionStatusNum": _text(execution.status_code),
        "executionStatusText": _text(execution.status),
        "executionDetails": [_detail(row, zone) for row in execution.details],
        "executionDetailsConcatenated": _concatenated(execution.details),
        "scriptLogSize": log.size_bytes if log else 0,
        "scriptLogSizeRows": log.total_lines if log else "",
        "scriptLogSizeCharacters": len(full) if full else "",
        "scriptLogHead": head,
        "scriptLogHeadCount": len(log.head) if log else 0,
        "scriptLogTail": tail,
        "scriptLogTailCount": len(log.tail) if log else 0,
        "qlikSenseQMC": _text(links.qmc),
        "qlikSenseHub": _text(links.hub),
        "genericUrls": [
            {"id": link.id, "linkText": link.text, "comment": link.comment, "url": link.url}
            for link in links.generic
        ],
    }


def _iso(value: datetime | None) -> str:
    """Butler's UTC form, ``2021-02-16T08:24:40.000Z``."""
    if value is None:
        return ""
    moment = value.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


class _Lazy(Mapping[str, Any]):
    """Fields worked out only when a template reads one of them: the five local-time formats
    of every time cost about ten times the rest of a context, and most templates use none."""

    def __init__(self, keys: tuple[str, ...], compute: Callable[[], dict[str, Any]]) -> None:
        self._keys, self._compute = keys, compute
        self._values: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        if self._values is None:
            self._values = self._compute()
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _time_keys(prefix: str) -> tuple[str, ...]:
    return (f"{prefix}UTC", *(f"{prefix}Local{n}" for n in range(1, 6)))


def _lazy_times(value: datetime | None, prefix: str, zone: tzinfo | None) -> _Lazy:
    return _Lazy(_time_keys(prefix), lambda: local_times(value, prefix, zone))
