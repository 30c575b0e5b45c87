"""One destination per outcome: ``email-failed``, ``email-aborted``, ``email-succeeded`` and
``email-recovered`` (the names are part of the ledger key: keep them stable).

A target is one recipient's address; the rate key is ``<task id>|<address>``, Butler's key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from herald_emailer.context import outcome_of
from herald_emailer.message import build_body, build_message, envelope_sender
from herald_emailer.recipients import recipients
from herald_emailer.rendering import Rendered, Renderer, fallback
from herald_emailer.settings import Outcome, OutcomeSettings
from herald_emailer.smtp import SmtpTransport
from herald_shared.delivery.destination import Destination, Target
from herald_shared.events import Event
from herald_shared.matcher import When

log = logging.getLogger(__name__)

# Events whose rendered parts are kept: the recipients of one event are delivered together.
_RECENTLY_RENDERED = 64


class EmailDestination(Destination):
    def __init__(
        self,
        outcome: Outcome,
        settings: OutcomeSettings,
        *,
        renderer: Renderer,
        transport: SmtpTransport,
        default_sender: str,
        takes_recoveries: bool = False,
    ) -> None:
        self.name = f"email-{outcome}"
        self.outcome = outcome
        self.when: When = settings.when
        self.rate_limit = settings.rate_limit or None
        self._settings = settings
        self._renderer = renderer
        self._transport = transport
        self._sender = settings.from_address or default_sender
        # The succeeded block also takes successes that recover when `recovered` is disabled.
        self._outcomes = {outcome, "recovered"} if takes_recoveries else {outcome}
        self._recently_rendered: dict[str, tuple[Rendered, bytes, str | None]] = {}

    def targets(self, event: Event) -> Sequence[Target]:
        if outcome_of(event) not in self._outcomes:
            return ()
        addresses = recipients(self._settings, event)
        if not addresses:
            log.info("%s of task %r: no recipients", self.name, event.task.name)
        return [Target(id=address, rate_key=f"{event.task.id}|{address}") for address in addresses]

    def render(self, event: Event) -> tuple[Rendered, bytes, str | None]:
        """The message's parts and its body, or the plain-text alert (and why) when a template
        fails. Every recipient of an event gets the same: it is made once per event."""
        prepared = self._recently_rendered.get(event.event_id)
        if prepared is None:
            rendered, problem = self._render(event)
            prepared = (rendered, build_body(rendered), problem)
            self._recently_rendered[event.event_id] = prepared
            while len(self._recently_rendered) > _RECENTLY_RENDERED:
                del self._recently_rendered[next(iter(self._recently_rendered))]
        return prepared

    def _render(self, event: Event) -> tuple[Rendered, str | None]:
        try:
            return self._renderer.render(event), None
        except Exception as error:
            log.exception(
                "%s: the template failed for task %r; sending a plain-text alert instead",
                self.name,
                event.task.name,
            )
            return fallback(event, error), f"{type(error).__name__}: {error}"

    async def deliver(self, event: Event, target: str) -> str | None:
        rendered, body, problem = self.render(event)
        message = build_message(
            rendered,
            sender=self._sender,
            recipient=target,
            priority=self._settings.priority,
            event_id=event.event_id,
            body=body,
        )
        answer = await self._transport.send(message, envelope_sender(self._sender), target)
        if problem is not None:
            return f"{answer} (plain-text fallback, the template failed: {problem})"
        return answer

    async def close(self) -> None:
        await self._transport.close()
