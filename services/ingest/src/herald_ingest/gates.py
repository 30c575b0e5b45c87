"""The custom properties herald.yaml gates on, checked against the QRS once ingest has started.

Butler refuses to start when a custom property its configuration names is not defined in the
QMC. Herald checks the same thing where it can: in ingest, the one service that talks to the QRS
(the subscribers never do, and ``herald check-config`` often runs where neither the QRS nor its
client certificate is reachable, e.g. in CI). The check runs once, in the background, after the
socket is open, so a slow or absent QRS delays no datagram; what it finds is a WARNING per
missing name, naming the keys that use it, because a misspelt name otherwise silently matches
nothing. Ingest starts either way: a property may be created in the QMC after Herald.

Only names written in the file are checked (``when: task_custom_properties`` /
``app_custom_properties``, ``recipients_custom_property``, New Relic's ``*_account_property``,
InfluxDB's ``custom_property.name``), not built-in defaults such as
``Butler_FailedAlertSendToEmail``: a site that never created a default's property has not
misspelt anything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

# Keys whose value names one custom property.
_NAMING_KEYS = ("recipients_custom_property", "failed_account_property", "aborted_account_property")
# Keys whose value maps custom property names to the values wanted.
_MAPPING_KEYS = ("task_custom_properties", "app_custom_properties")


def gating_custom_properties(data: dict[str, Any]) -> dict[str, list[str]]:
    """Every custom property name the document gates on -> the dotted keys that name it."""
    found: dict[str, list[str]] = {}
    for key, name in _walk(data, ""):
        found.setdefault(name, []).append(key)
    return found


def _walk(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, f"{path}[{index}]")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        where = f"{path}.{key}" if path else str(key)
        if key in _NAMING_KEYS and isinstance(value, str) and value:
            yield where, value
        elif key in _MAPPING_KEYS and isinstance(value, dict):
            for name in value:
                yield f"{where}.{name}", str(name)
        elif key == "custom_property" and isinstance(value, dict) and value.get("name"):
            yield f"{where}.name", str(value["name"])
        else:
            yield from _walk(value, where)


def missing(gates: dict[str, list[str]], definitions: Any) -> dict[str, list[str]]:
    """The gates whose name no item of ``/qrs/custompropertydefinition`` has (exactly: the
    matcher looks names up as written)."""
    defined = {
        str(item.get("name", ""))
        for item in (definitions if isinstance(definitions, list) else [])
        if isinstance(item, dict)
    }
    return {name: keys for name, keys in gates.items() if name not in defined}


def warn(absent: dict[str, list[str]], qrs_url: str) -> None:
    for name, keys in sorted(absent.items()):
        log.warning(
            "custom property %r (%s) is not defined in the QRS at %s: it matches no task or app; "
            "check the spelling or create it in the QMC (Custom properties)",
            name,
            ", ".join(keys),
            qrs_url,
        )
