"""deploy/config/LocalLogConfig.xml: what a Qlik administrator copies to each Sense node."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from herald_ingest.datagram import Datagram, parse

FILE = Path(__file__).resolve().parents[2] / "deploy" / "config" / "LocalLogConfig.xml"
# What log4net puts in for each pattern token on a real node.
TOKENS = {
    "%hostname": "sense-node-1",
    "%property{TaskName}": "Reload of Sales; EMEA",
    "%property{AppName}": "Sales; EMEA",
    "%property{User}": "INTERNAL\\sa_scheduler",
    "%property{TaskId}": "3F1C9A52-7D0E-4D2B-9A8E-0B7C1E2D4F60",
    "%property{AppId}": "8a2b6c1d-4e3f-4a5b-9c7d-1e2f3a4b5c6d",
    "%date": "2024-10-10 16:00:03,007",
    "%level": "INFO",
    "%property{ExecutionId}": "0b9e3f2a-6c5d-4e7f-8a9b-1c2d3e4f5a6b",
    "%message": "Execution State Change to FinishedSuccess; done",
}


def _render(pattern: str) -> bytes:
    for token, value in TOKENS.items():
        pattern = pattern.replace(token, value)
    return pattern.encode()


def test_every_appender_sends_a_datagram_that_ingest_accepts() -> None:
    configuration = ElementTree.parse(FILE).getroot()
    outcomes = {}
    for appender in configuration.findall("appender"):
        assert appender.get("type") == "log4net.Appender.UdpAppender"
        params = {p.get("name"): p.get("value") for p in appender.findall("param")}
        assert params["remotePort"] == "9998"
        assert params["encoding"] == "utf-8"
        [pattern] = [
            p.get("value") for p in appender.iter("param") if p.get("name") == "conversionpattern"
        ]
        assert pattern is not None
        parsed = parse(_render(pattern))
        assert isinstance(parsed, Datagram), parsed
        assert parsed.task_name == "Reload of Sales; EMEA"
        assert parsed.app_name == "Sales; EMEA"
        assert parsed.task_id == "3f1c9a52-7d0e-4d2b-9a8e-0b7c1e2d4f60"
        assert parsed.message == "Execution State Change to FinishedSuccess; done"
        outcomes[appender.get("name")] = parsed.outcome
    assert sorted(outcomes.values()) == ["aborted", "distribute", "failed", "succeeded"]


def test_every_appender_is_attached_to_the_scheduler_loggers() -> None:
    configuration = ElementTree.parse(FILE).getroot()
    appenders = {appender.get("name") for appender in configuration.findall("appender")}
    attached = {
        ref.get("ref")
        for logger in configuration.findall("logger")
        for ref in logger.findall("appender-ref")
    }
    assert attached == appenders
    assert {logger.get("name") for logger in configuration.findall("logger")} == {
        "System.Scheduler.Scheduler.Master.Task.TaskSession",
        "System.Scheduler.Scheduler.Slave.Tasks.ReloadTask",
    }
