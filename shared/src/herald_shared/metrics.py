"""Every Prometheus metric Herald exports, in one place.

Names follow Prometheus conventions: ``herald_`` prefix, base units, ``_total`` for counters.
Every metric carries ``service`` (kebab-case, e.g. ``log-archiver``), so one scrape of
``herald up`` (all services in one process) still tells the services apart. No label ever holds a
secret, an address or an event id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
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
    "RECONCILE_EVENTS",
    "RECONCILE_EXECUTIONS",
    "RECONCILE_LAG",
    "RECONCILE_SWEEPS",
    "REPLAYED",
    "REPLAY_REQUESTS",
    "SILENCES_ACTIVE",
]

BROKER_CONNECTED = Gauge(
    "herald_broker_connected", "1 while the service is connected to the MQTT broker", ["service"]
)
EVENTS_RECEIVED = Counter(
    "herald_events_received_total",
    "Events taken from the broker, by outcome: stored, duplicate (already known) or rejected",
    ["service", "outcome"],
)
DELIVERIES = Counter(
    "herald_deliveries_total",
    "Finished deliveries by outcome: delivered, dead_lettered, suppressed (rate limit), skipped,"
    " silenced (a silence), muted (a time interval)",
    ["service", "destination", "outcome"],
)
SILENCES_ACTIVE = Gauge(
    "herald_silences_active",
    "Silences on the broker that apply to this service and are active now",
    ["service"],
)
DELIVERY_ATTEMPTS = Counter(
    "herald_delivery_attempts_total",
    "Delivery attempts by result: ok, transient_error, permanent_error",
    ["service", "destination", "result"],
)
DELIVERY_SECONDS = Histogram(
    "herald_delivery_seconds",
    "Time from an event's arrival at the service to its delivery",
    ["service", "destination"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
DELIVERY_QUEUE = Gauge(
    "herald_delivery_queue",
    "Deliveries waiting or being retried, per destination",
    ["service", "destination"],
)
OUTBOX = Gauge(
    "herald_outbox_messages",
    "Messages stored locally and waiting for the broker's acknowledgement",
    ["service"],
)
REPLAYED = Counter(
    "herald_replayed_total",
    "Dead letters put back to pending by a replay request (herald replay, the console)",
    ["service", "destination"],
)
REPLAY_REQUESTS = Counter(
    "herald_replay_requests_total",
    "Replay requests taken, by outcome: answered, or rejected (not a replay request)",
    ["service", "outcome"],
)
PUBLISHES_REFUSED = Counter(
    "herald_publishes_refused_total",
    "Publishes the broker acknowledged with a failure reason (MQTT 5), e.g. 'Not authorized' by its ACL",
    ["service", "reason"],
)

# --- ingest ----------------------------------------------------------------------------------

DATAGRAMS = Counter(
    "herald_datagrams_total",
    "Scheduler datagrams received, by outcome: accepted, duplicate, rejected, over_limit "
    "(beyond ingest.max_datagrams_per_minute, dead-lettered), unstored (held in memory while the "
    "state disk cannot be written), lost (the memory for them was full)",
    ["service", "outcome"],
)
DATAGRAMS_REJECTED = Counter(
    "herald_datagrams_rejected_total",
    "Datagrams rejected, by reason (source, too_large, not_utf8, unknown_type, field_count, …)",
    ["service", "reason"],
)
ENRICHMENTS = Counter(
    "herald_enrichments_total",
    "Events enriched from the QRS, by status: complete or partial",
    ["service", "status"],
)
ENRICHMENT_SECONDS = Histogram(
    "herald_enrichment_seconds",
    "Time from a datagram's arrival to its event being stored for publishing",
    ["service"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
DATAGRAM_HANDLING_FAILURES = Counter(
    "herald_datagram_handling_failures_total",
    "Handlings of an accepted datagram that failed unexpectedly (each is retried a bounded number of times)",
    ["service"],
)
DATAGRAMS_DEAD_LETTERED = Counter(
    "herald_datagrams_dead_lettered_total",
    "Datagrams published as dead letters: accepted ones that could not be made into an event "
    "at all, and those over ingest.max_datagrams_per_minute",
    ["service"],
)
INBOX = Gauge(
    "herald_ingest_inbox",
    "Accepted datagrams waiting for enrichment",
    ["service"],
)
RECONCILE_SWEEPS = Counter(
    "herald_reconcile_sweeps_total",
    "Reconciliation sweeps of the QRS's execution results, by outcome: completed, failed, skipped",
    ["service", "outcome"],
)
RECONCILE_EXECUTIONS = Counter(
    "herald_reconcile_executions_total",
    "Execution results the reconciliation sweep read from the QRS",
    ["service"],
)
RECONCILE_EVENTS = Counter(
    "herald_reconcile_events_total",
    "Events published by the reconciliation sweep: runs whose datagram never arrived",
    ["service"],
)
RECONCILE_LAG = Gauge(
    "herald_reconcile_lag_seconds",
    "How far the reconciliation sweep's checkpoint is behind now",
    ["service"],
)

# --- end-to-end acknowledgement (ingest's redelivery; `subscriber` names the service waited for) ---

EVENTS_RESENT = Counter(
    "herald_events_resent_total",
    "Events ingest published again because the subscriber service had not acknowledged them",
    ["service", "subscriber"],
)
EVENTS_UNACKNOWLEDGED = Gauge(
    "herald_events_unacknowledged",
    "Events the subscriber service has not acknowledged within ingest.redelivery.after (overdue)",
    ["service", "subscriber"],
)
EVENTS_EXPIRED = Counter(
    "herald_events_expired_total",
    "Events ingest gave up resending, never acknowledged by the subscriber service",
    ["service", "subscriber"],
)
