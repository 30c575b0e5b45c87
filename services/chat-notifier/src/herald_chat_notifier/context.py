"""What templates see: the event's facts as plain values, and the script-log excerpt.

Butler's field names (:func:`herald_shared.butler_fields.butler_fields`) are there too, with
``scriptLogHead``/``scriptLogTail`` cut to this target's ``head_lines``/``tail_lines`` as Butler
did per destination, so a converted Butler template renders (docs/templates.md).

The excerpt is kept as lines (real line breaks, never the two characters ``\\n``) and trimmed
by :func:`fit_lines` to what a platform accepts, with a visible note saying what was left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from herald_chat_notifier import templating
from herald_shared.butler_fields import butler_fields, zone
from herald_shared.events import Event, TaskSucceeded, labelled
from herald_shared.outcomes import Outcome, task_type_text

if TYPE_CHECKING:
    from herald_chat_notifier.chat import ChatTarget

log = logging.getLogger(__name__)

TITLES: dict[Outcome, str] = {
    "failed": "Qlik Sense reload failed",
    "aborted": "Qlik Sense reload aborted",
    "succeeded": "Qlik Sense reload succeeded",
    "recovered": "Qlik Sense task is running again",
}


def title(event: Event, outcome: Outcome) -> str:
    """``TITLES``, with the task's type in place of "reload" for other task types."""
    if event.task.type == "reload" or outcome == "recovered":
        return TITLES[outcome]
    return TITLES[outcome].replace("reload", f"{task_type_text(event)} task")


@dataclass(frozen=True)
class Excerpt:
    """Script-log lines chosen for one message and what was left out of them."""

    lines: list[str]
    omitted: int  # lines of the chosen excerpt that did not fit
    note: str  # e.g. "… 1200 lines not shown (message size limit)"; "" when nothing was cut


def clean_lines(lines: Sequence[str]) -> list[str]:
    """Lines without stray CRs (a CRLF log split on LF keeps them)."""
    return [line.replace("\r", "") for line in lines]


def fit_lines(
    lines: Sequence[str],
    budget: int,
    *,
    from_end: bool,
    measure: Callable[[str], int] = len,
    reason: str = "message size limit",
) -> Excerpt:
    """As many whole lines as fit in ``budget`` (as ``measure`` counts them, one per line break),
    taken from the start, or from the end with ``from_end``; a line longer than the budget is cut.
    When anything is left out, room for the note is kept within the budget."""
    if sum(measure(line) + 1 for line in lines) <= budget:
        return Excerpt(list(lines), 0, "")
    room = budget - NOTE_ROOM
    chosen: list[str] = []
    used = 0
    cut = False
    for line in reversed(lines) if from_end else lines:
        size = measure(line) + 1
        if used + size > room:
            if not chosen and room > 20:  # one huge line: keep its readable part
                chosen.append(_cut(line, room - 1, measure))
                cut = True
            break
        chosen.append(line)
        used += size
    if from_end:
        chosen.reverse()
    omitted = len(lines) - len(chosen) + (1 if cut else 0)
    note = f"… {omitted} line{'s' if omitted != 1 else ''} not shown ({reason})"
    if cut:
        note = f"… a long line was cut, {note[2:]}"
    return Excerpt(chosen, omitted, note)


NOTE_ROOM = 100  # what the trimming note takes, at most


def _cut(line: str, room: int, measure: Callable[[str], int]) -> str:
    low, high = 0, len(line)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(line[:middle] + "…") <= room:
            low = middle
        else:
            high = middle - 1
    return line[:low] + "…"


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else ""


def _duration(milliseconds: int | None) -> str:
    if milliseconds is None:
        return ""
    seconds = milliseconds // 1000
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def build(event: Event, outcome: Outcome, target: ChatTarget) -> dict[str, Any]:
    """The template context for one message (the excerpt fields are added by the provider)."""
    app = event.app
    owner = app.owner if app is not None else None
    execution = event.execution
    script_log = event.script_log
    head = clean_lines(script_log.head[: target.head_lines]) if script_log else []
    tail_source = script_log.tail if script_log else []
    tail = clean_lines(
        tail_source[len(tail_source) - target.tail_lines :] if target.tail_lines else []
    )
    recovers = event.recovers if isinstance(event, TaskSucceeded) else None
    links = event.links
    context = {
        **butler_fields(event, zone(target.timezone)),
        "scriptLogHead": "\n".join(head),
        "scriptLogHeadCount": len(head),
        "scriptLogTail": "\n".join(tail),
        "scriptLogTailCount": len(tail),
        "outcome": outcome,
        "title": labelled(event, title(event, outcome)),
        "test": event.test,
        "kind": event.kind,
        "event_id": event.event_id,
        "task": {
            "id": event.task.id,
            "name": event.task.name,
            "type": event.task.type,
            "tags": list(event.task.tags),
        },
        "app": {
            "id": app.id if app else "",
            "name": app.name if app else "",
            "stream": app.stream.name if app and app.stream else "",
            "owner": owner.name if owner else "",
            "owner_email": owner.emails[0] if owner and owner.emails else "",
            "owner_user": f"{owner.directory}\\{owner.user_id}" if owner else "",
        },
        "execution": {
            "status": execution.status or "",
            "status_code": "" if execution.status_code is None else str(execution.status_code),
            "node": execution.node or event.sense_host,
            "started": _time(execution.started_at),
            "stopped": _time(execution.stopped_at),
            "duration": _duration(execution.duration_ms),
            "details": [f"{_time(row.at)} {row.message}".strip() for row in execution.details],
        },
        "occurred": _time(event.occurred_at),
        "host": event.sense_host,
        "user": event.user,
        "log_message": event.log_message,
        "links": {
            "qmc": links.qmc or "",
            "hub": links.hub or "",
            "app": links.app or "",
            "generic": [{"text": link.text, "url": link.url} for link in links.generic],
        },
        "script_log": {
            "head": head,
            "tail": tail,
            "total_lines": script_log.total_lines if script_log else 0,
            "available": bool(head or tail),
        },
        "recovers": None
        if recovers is None
        else {
            "kind": "failure" if recovers.kind == "task_failed" else "abort",
            "event_id": recovers.event_id,
            "occurred": _time(recovers.occurred_at),
        },
        "enrichment": {"status": event.enrichment.status, "reasons": event.enrichment.reasons},
    }
    context["basic_title"] = _basic_title(target, context)
    return context


def _basic_title(target: ChatTarget, context: dict[str, Any]) -> str:
    """The basic message's title: the target's ``basic_title`` template, else (or when it fails
    for this event) "<title>: <task name>"."""
    default = f"{context['title']}: {context['task']['name']}"
    if target.basic_title is None:
        return default
    try:
        return " ".join(templating.render_text(target.basic_title, context).split()) or default
    except templating.TemplateError as error:
        log.warning(
            "%s: basic_title does not render (%s); the default title is used", target.name, error
        )
        return default
