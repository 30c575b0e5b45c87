"""The MQTT topics of ARCHITECTURE.md, in one place. The prefix is configurable (default ``herald``)."""

from __future__ import annotations

from herald_shared.events import Event, Kind, TaskType

__all__ = [
    "VERSION",
    "acks_filter",
    "acks_topic",
    "dead_letter_topic",
    "deliveries_topic",
    "event_topic",
    "events_filter",
    "events_subscription",
    "family_filter",
    "lease_topic",
    "replay_topic",
    "replayed_filter",
    "replayed_topic",
    "self_report_filter",
    "self_report_topic",
    "service_and_instance",
    "silence_topic",
    "status_filter",
    "status_topic",
    "topic_of",
]

VERSION = "v1"


def event_topic(prefix: str, kind: Kind, task_type: TaskType, task_id: str) -> str:
    """``herald/v1/events/<kind>/<task_type>/<task_id>``: one event, QoS 1, not retained."""
    return f"{prefix}/{VERSION}/events/{kind}/{task_type}/{task_id}"


def topic_of(prefix: str, event: Event) -> str:
    return event_topic(prefix, event.kind, event.task.type, event.task.id)


def events_filter(prefix: str) -> str:
    """Every event of every kind."""
    return f"{prefix}/{VERSION}/events/#"


def events_subscription(prefix: str, service: str, *, shared: bool) -> str:
    """What a subscriber service subscribes to.

    Shared (MQTT v5 ``$share``), replicas of one service split the events between them; an
    embedded broker without shared subscriptions gets the plain filter.
    """
    topic_filter = events_filter(prefix)
    return f"$share/herald-{service}/{topic_filter}" if shared else topic_filter


def status_topic(prefix: str, service: str, instance: str) -> str:
    """Retained ``online`` birth and ``offline`` will of one service instance."""
    return f"{prefix}/{VERSION}/status/{service}/{instance}"


def lease_topic(prefix: str, service: str, job: str) -> str:
    """Retained: which instance of a service does ``job`` (ingest's ``reconcile`` sweep)."""
    return f"{prefix}/{VERSION}/lease/{service}/{job}"


def family_filter(prefix: str, family: str) -> str:
    """Every topic of one family (``status``, ``destinations``, ``deliveries``, ``pending``, …)."""
    return f"{prefix}/{VERSION}/{family}/#"


def destinations_topic(prefix: str, service: str, instance: str) -> str:
    """Retained JSON list of the destination names one service instance delivers to.

    Published after ``online`` on every connect and cleared (an empty retained message) on a
    clean stop, so ``herald send-test`` knows which reports to wait for.
    """
    return f"{prefix}/{VERSION}/destinations/{service}/{instance}"


def pending_topic(prefix: str, service: str) -> str:
    """A test alert's deliveries that are not over yet: taken, or failed once and to be retried."""
    return f"{prefix}/{VERSION}/pending/{service}"


def self_report_topic(prefix: str, service: str, instance: str) -> str:
    """Retained: what one instance says of itself (version, readiness, queue; ``self_report.py``).

    Under its status topic, so that the account that may publish the status may publish this,
    and ``status/+/+`` subscribers do not get it."""
    return f"{status_topic(prefix, service, instance)}/health"


def self_report_filter(prefix: str) -> str:
    """Every instance's self-report."""
    return f"{prefix}/{VERSION}/status/+/+/health"


def status_filter(prefix: str) -> str:
    """Every service instance's status."""
    return f"{prefix}/{VERSION}/status/+/+"


def acks_topic(prefix: str, service: str, instance: str) -> str:
    """The event ids one instance of a subscriber service has taken on (ledger committed)."""
    return f"{prefix}/{VERSION}/acks/{service}/{instance}"


def acks_filter(prefix: str) -> str:
    """Every subscriber service's acknowledgements."""
    return f"{prefix}/{VERSION}/acks/+/+"


def service_and_instance(topic: str) -> tuple[str, str]:
    """``(service, instance)`` of a status or acks topic."""
    *_, service, instance = topic.split("/")
    return service, instance


def deliveries_topic(prefix: str, service: str) -> str:
    """Delivery receipts: event id, destination, outcome, attempts, time."""
    return f"{prefix}/{VERSION}/deliveries/{service}"


def dead_letter_topic(prefix: str, service: str) -> str:
    """Events that could not be delivered, with the reason."""
    return f"{prefix}/{VERSION}/dead-letter/{service}"


def silence_topic(prefix: str, silence_id: str) -> str:
    """``herald/v1/silences/<id>``: one silence, retained; an empty payload clears it."""
    return f"{prefix}/{VERSION}/silences/{silence_id}"


def replay_topic(prefix: str, service: str) -> str:
    """``herald/v1/replay/<service>``: a request to re-deliver dead letters, QoS 1, not retained.

    Every instance of the service subscribes without ``$share``: each one owns its own ledger, so
    each answers for the dead letters it holds.
    """
    return f"{prefix}/{VERSION}/replay/{service}"


def replayed_topic(prefix: str, service: str, instance: str) -> str:
    """``herald/v1/replayed/<service>/<instance>``: one instance's answer to a replay request."""
    return f"{prefix}/{VERSION}/replayed/{service}/{instance}"


def replayed_filter(prefix: str) -> str:
    """Every instance's answers to replay requests."""
    return f"{prefix}/{VERSION}/replayed/+/+"
