"""herald_shared's declared public surface, and that the other packages keep to it.

Each module other packages import declares ``__all__``. Its expected value is written out here,
so widening or narrowing what services, tools and the testkit may rely on is a deliberate edit
of this file. Every ``herald_shared`` name imported (or reached as ``module.name``) under
services/, tools/ and testkit/ must be in its module's ``__all__``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
IMPORTERS = ("services", "tools", "testkit")

PUBLIC: Final[dict[str, set[str]]] = {
    "herald_shared.arguments": {"duration", "moment", "moment_or_ago"},
    "herald_shared.bus": {
        "OFFLINE",
        "ONLINE",
        "Bus",
        "BusError",
        "Handler",
        "Message",
        "PublishRefused",
    },
    "herald_shared.butler_fields": {
        "TimeZoneName",
        "butler_fields",
        "handlebars_text",
        "local_time",
        "local_times",
        "site_zone",
        "zone",
    },
    "herald_shared.cli": {"BUILT_IN", "EXIT_CONFIG", "add_config_argument", "main"},
    "herald_shared.config": {
        "ENV_CONFIG_PATH",
        "ENV_PREFIX",
        "SECTIONS",
        "ConfigDocument",
        "ConfigError",
        "Duration",
        "Section",
        "load",
        "reveal",
        "secret_values",
    },
    "herald_shared.db": {"Database", "database_for"},
    "herald_shared.delivery.destination": {
        "SINGLE_TARGET",
        "Context",
        "DeliveryError",
        "Destination",
        "DestinationModule",
        "PermanentError",
        "Skipped",
        "Target",
        "TransientError",
        "build",
    },
    "herald_shared.delivery.grouping": {
        "dead_members",
        "DIGEST_PREFIX",
        "Digest",
        "DigestItem",
        "digest_context",
        "is_digest",
        "sample_digest",
    },
    "herald_shared.delivery.http": {
        "CONNECTIONS",
        "EVENT_ID_HEADER",
        "RESPONSE_TEXT_LIMIT",
        "TOKEN_LENGTH",
        "TRANSIENT_STATUSES",
        "Request",
        "answer_text",
        "failure",
        "is_transient",
        "retry_after",
        "send",
        "url_secrets",
    },
    "herald_shared.delivery.acks": {"Acknowledgements"},
    "herald_shared.delivery.receipts": {
        "DeadLetter",
        "DeliveryState",
        "Pending",
        "Receipt",
        "encode",
        "timestamp",
    },
    "herald_shared.delivery.runner": {"PURGE_INTERVAL", "Runner"},
    "herald_shared.events": {
        "App",
        "Enrichment",
        "Event",
        "Execution",
        "ExecutionDetail",
        "GenericLink",
        "KINDS",
        "Kind",
        "Links",
        "Owner",
        "Recovery",
        "ScriptLog",
        "Stream",
        "TASK_TYPES",
        "TEST_LABEL",
        "Task",
        "TaskAborted",
        "TaskFailed",
        "TaskSucceeded",
        "TaskType",
        "decode",
        "encode",
        "event_class",
        "event_id_for",
        "labelled",
        "recovery_of",
        "to_builtins",
    },
    "herald_shared.following": {
        "SETTLE_SECONDS",
        "Follower",
        "Instance",
        "Roster",
        "connect",
        "connection",
        "receipt_line",
        "section_of",
        "settled",
        "wait_until",
        "where",
    },
    "herald_shared.http_client": {"Answer", "HttpClient", "Unreachable"},
    "herald_shared.logs": {"REDACTED", "REDACTOR", "JsonFormatter", "Redactor", "redact", "setup"},
    "herald_shared.matcher": {"MATCH_ALL", "When"},
    "herald_shared.metrics": {
        "BROKER_CONNECTED",
        "DATAGRAMS",
        "DATAGRAMS_DEAD_LETTERED",
        "DATAGRAMS_REJECTED",
        "DATAGRAM_HANDLING_FAILURES",
        "DELIVERIES",
        "DELIVERY_ATTEMPTS",
        "DELIVERY_QUEUE",
        "DELIVERY_SECONDS",
        "ENRICHMENTS",
        "ENRICHMENT_SECONDS",
        "EVENTS_EXPIRED",
        "EVENTS_RECEIVED",
        "EVENTS_RESENT",
        "EVENTS_UNACKNOWLEDGED",
        "INBOX",
        "OUTBOX",
        "PUBLISHES_REFUSED",
        "SILENCES_ACTIVE",
        "RECONCILE_EVENTS",
        "RECONCILE_EXECUTIONS",
        "RECONCILE_LAG",
        "RECONCILE_SWEEPS",
        "REPLAYED",
        "REPLAY_REQUESTS",
    },
    "herald_shared.outbox": {"REFUSED_LOG_EVERY", "Outbox", "Publisher"},
    "herald_shared.preflight": {
        "Preflight",
        "ServiceCheck",
        "broker_account",
        "run",
        "secrets_not_mounted",
        "tls_files",
    },
    "herald_shared.outcomes": {
        "OUTCOMES",
        "PROBLEMS",
        "Outcome",
        "Problem",
        "outcome_of",
        "problem_outcomes",
        "problems",
        "recovered_from",
        "task_type_text",
    },
    "herald_shared.runtime": {
        "ENTRY_POINT_GROUP",
        "Context",
        "ProcessSettings",
        "Service",
        "ServiceSpec",
        "configure",
        "installed_service",
        "installed_service_names",
        "installed_services",
        "serve",
    },
    "herald_shared.samples": {
        "sample_aborted",
        "sample_events",
        "sample_failed",
        "sample_partial",
        "sample_succeeded",
    },
    "herald_shared.replay": {
        "ReplayAnswer",
        "ReplayRequest",
        "ReplayedDelivery",
        "decode_answer",
        "decode_request",
        "described",
        "encode",
        "new_request_id",
    },
    "herald_shared.sendtest": {
        "DEFAULT_TIMEOUT",
        "Watch",
        "connection",
        "register",
        "send_test",
        "test_event",
    },
    "herald_shared.self_report": {
        "INTERVAL",
        "REFRESH",
        "SelfReport",
        "SelfReporter",
        "decode",
        "encode",
        "herald_version",
    },
    "herald_shared.settings": {
        "BrokerSettings",
        "DeliverySettings",
        "DestinationSettings",
        "GroupSettings",
        "HealthSettings",
        "LoggingSettings",
        "ServiceSection",
        "TlsSettings",
    },
    "herald_shared.silence_command": {"new_silence", "register", "state"},
    "herald_shared.silences": {
        "KEYS",
        "Matcher",
        "Silence",
        "SilenceBook",
        "criterion",
        "decode",
        "encode",
        "new_id",
    },
    "herald_shared.subscriber": {"OUTBOX_FLUSH_SECONDS", "SubscriberService"},
    "herald_shared.supervision": {"Supervisor", "WorkerPool", "every", "stop_pools"},
    "herald_shared.tail": {"ReadinessChanges", "describe", "register", "tail"},
    "herald_shared.time_intervals": {
        "SECTION",
        "Interval",
        "NamedInterval",
        "TimeIntervals",
        "check_references",
        "covering",
        "load",
        "muted",
        "problems_of",
    },
    "herald_shared.tls": {"client_context"},
    "herald_shared.topics": {
        "VERSION",
        "acks_filter",
        "acks_topic",
        "dead_letter_topic",
        "deliveries_topic",
        "event_topic",
        "events_filter",
        "events_subscription",
        "family_filter",
        "service_and_instance",
        "status_filter",
        "silence_topic",
        "lease_topic",
        "replay_topic",
        "replayed_filter",
        "replayed_topic",
        "self_report_filter",
        "self_report_topic",
        "status_topic",
        "topic_of",
    },
}


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, ValueError):
        return False  # a parent is not a package: ``events.Event.x`` is no module


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        parent = dotted(node.value)
        return None if parent is None else f"{parent}.{node.attr}"
    return None


def reached(tree: ast.Module) -> Iterator[tuple[str, str, int]]:
    """Each (module, name, line) of a herald_shared name the file imports or reaches into."""
    modules: dict[str, str] = {}  # local name -> the herald_shared module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("herald_shared"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if is_module(full):
                    modules[alias.asname or alias.name] = full
                else:
                    yield str(node.module), alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("herald_shared"):
                    local = alias.asname or alias.name.split(".")[0]
                    modules[local] = alias.name if alias.asname else local
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or (path := dotted(node.value)) is None:
            continue
        head, _, rest = path.partition(".")
        if head in modules:
            module = modules[head] + (f".{rest}" if rest else "")
            if is_module(module) and not is_module(f"{module}.{node.attr}"):
                yield module, node.attr, node.lineno


def imports() -> Iterator[tuple[Path, str, str, int]]:
    for folder in IMPORTERS:
        for file in sorted((REPOSITORY / folder).rglob("*.py")):
            tree = ast.parse(file.read_text(), filename=str(file))
            for module, name, line in reached(tree):
                yield file.relative_to(REPOSITORY), module, name, line


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_each_module_declares_the_public_surface_written_here(module: str) -> None:
    declared = importlib.import_module(module).__all__
    assert set(declared) == PUBLIC[module]
    assert len(declared) == len(set(declared))
    imported = importlib.import_module(module)
    assert [name for name in declared if not hasattr(imported, name)] == []


def test_other_packages_use_only_names_herald_shared_declares_public() -> None:
    problems = []
    for file, module, name, line in imports():
        public = getattr(importlib.import_module(module), "__all__", ())
        if name.startswith("_") or name not in public:
            problems.append(
                f"{file}:{line} uses {module}.{name}, which is not in that module's __all__"
            )
    assert not problems, "\n".join(problems)


def test_every_module_other_packages_use_is_pinned_here() -> None:
    used = {module for _, module, _, _ in imports()}
    assert used <= set(PUBLIC), sorted(used - set(PUBLIC))
    assert used, "the walk found no import of herald_shared at all"
