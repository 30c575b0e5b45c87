"""Who gets an alert: static recipients, a task custom property, and the app owner.

Each recipient gets a message of their own. Addresses are compared case-insensitively (the
first spelling wins), and an invalid address is skipped with a warning: one bad value in a
custom property, or an owner without an address, never costs the others their alert. A test
alert (``herald send-test``) goes to the static recipients only (:func:`configured_recipients`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from email.utils import parseaddr
from typing import TYPE_CHECKING

import email_validator
from email_validator import EmailNotValidError, validate_email

from herald_shared.events import Event, Owner

if TYPE_CHECKING:
    from herald_emailer.destinations.email import AppOwnerSettings, OutcomeSettings, OwnerRef

log = logging.getLogger(__name__)

# email-validator refuses special-use names (local, internal, …) even as syntax; its README
# says to edit this list to allow them. Only the emailer uses the library, in this process.
email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()


def recipients(settings: OutcomeSettings, event: Event) -> list[str]:
    candidates: list[tuple[str, str]] = []  # (address, where it came from, for the warning)
    if settings.recipients_when.matches(event):
        candidates += [(address, "recipients") for address in settings.recipients]
    if settings.recipients_custom_property:
        name = settings.recipients_custom_property
        values = event.task.custom_properties.get(name, [])
        candidates += [(value, f"task custom property {name}") for value in values]
    if settings.app_owner.enabled:
        candidates += [
            (address, "app owner") for address in _owner_addresses(settings.app_owner, event)
        ]
    return _valid_unique(candidates, event)


def configured_recipients(settings: OutcomeSettings, event: Event) -> list[str]:
    """The outcome's own ``recipients`` list, without its gate: where a test alert goes."""
    return _valid_unique([(address, "recipients") for address in settings.recipients], event)


def _owner_addresses(settings: AppOwnerSettings, event: Event) -> list[str]:
    owner = event.app.owner if event.app is not None else None
    if owner is None:
        return []
    included = settings.include_all or _listed(owner, settings.include)
    if not included or _listed(owner, settings.exclude):
        return []
    if not owner.emails:
        log.warning(
            "the owner %s\\%s of app %r has no e-mail address; the other recipients still get "
            "the alert",
            owner.directory,
            owner.user_id,
            event.app.name if event.app else "",
        )
    return list(owner.emails)


def _listed(owner: Owner, users: Iterable[OwnerRef]) -> bool:
    return any((user.directory, user.user_id) == (owner.directory, owner.user_id) for user in users)


def _valid_unique(candidates: Iterable[tuple[str, str]], event: Event) -> list[str]:
    seen: set[str] = set()
    chosen: list[str] = []
    for raw, origin in candidates:
        address = raw.strip()
        checked = _checked(address)
        if isinstance(checked, EmailNotValidError):
            log.warning(
                "skipping the invalid address %r (%s) for task %r: %s",
                address,
                origin,
                event.task.name,
                checked,
            )
            continue
        folded = checked.casefold()
        if folded not in seen:
            seen.add(folded)
            chosen.append(checked)
    return chosen


def address_problem(value: str) -> str | None:
    """Why a configured address (``qlik-alerts@example.com`` or ``Name <address>``) cannot be
    used, or None."""
    address = parseaddr(value)[1] if "<" in value else value.strip()
    checked = _checked(address)
    if isinstance(checked, EmailNotValidError):
        return f"{value!r} is not an e-mail address: {checked}"
    return None


@functools.lru_cache(maxsize=4096)
def _checked(address: str) -> str | EmailNotValidError:
    """The normalized address, or why it is none. Kept per address: the same few addresses come
    with every alert, and checking one costs more than the rest of choosing recipients."""
    try:
        # Syntax only. No DNS: a lookup per alert would be slow, and the SMTP server has the
        # last word. Not globally deliverable: company mail lives under .local, .lan,
        # .internal, .corp, names email-validator refuses by default.
        return validate_email(
            address, check_deliverability=False, globally_deliverable=False
        ).normalized
    except EmailNotValidError as error:
        return error
