"""The Grafana dashboards are valid JSON and query what Herald writes."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"


def test_the_influxdb_dashboard_queries_butlers_measurements() -> None:
    dashboard = json.loads((GRAFANA / "herald-reloads-influxdb.json").read_text())
    queries = " ".join(t["query"] for p in dashboard["panels"] for t in p["targets"])
    for name in ("reload_task_failed", "reload_task_success", "task_executionDuration_sec"):
        assert name in queries


def test_the_prometheus_dashboard_queries_the_reload_metrics() -> None:
    dashboard = json.loads((GRAFANA / "herald-reloads-prometheus.json").read_text())
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for name in (
        "herald_reload_outcomes_total",
        "herald_reload_duration_seconds_bucket",
        "herald_reload_last_failure_timestamp_seconds",
        "herald_reload_last_success_timestamp_seconds",
        "herald_reload_series_dropped_total",
    ):
        assert name in queries
