"""The herald command as a user runs it."""

from __future__ import annotations

import asyncio
import json
from importlib.metadata import version
from pathlib import Path

import aiomqtt

from herald_testkit.ports import free_port
from herald_testkit.processes import Child, herald


async def test_herald_up_with_the_embedded_broker_answers_send_test(tmp_path: Path) -> None:
    config = tmp_path / "herald.yaml"
    config.write_text(
        f"broker: {{host: 127.0.0.1, port: {free_port()}, embedded: true, instance: demo}}\n"
        "health: {host: 127.0.0.1, port: 0}\n"
        f"log_archiver: {{directory: {tmp_path / 'logs'}, state_dir: {tmp_path / 'state'}}}\n"
    )
    up = await Child.python("-m", "herald_shared.cli", "up", "--config", str(config))
    try:
        for _ in range(50):  # the embedded broker and the archiver start in well under a second
            code, out, err = await herald("send-test", "--config", str(config), "--timeout", "20")
            if "cannot reach the broker" not in err and "no running service" not in err:
                break
            await asyncio.sleep(0.2)
        assert code == 0, err
        # A test alert is no failed reload: the archiver says so and archives nothing.
        assert "log-archiver: archive: skipped: test alert" in out
        assert not list((tmp_path / "logs").rglob("*.log"))
    finally:
        up.terminate()
        assert await up.wait() == 0


async def test_herald_run_names_the_installed_services_when_one_is_unknown(tmp_path: Path) -> None:
    config = tmp_path / "herald.yaml"
    config.write_text("log_archiver: {}\n")
    code, _, err = await herald("run", "log-archivr", "--config", str(config))
    assert code == 2
    assert "no service named 'log-archivr'" in err
    assert "log-archiver" in err


async def test_herald_up_refuses_a_file_that_configures_no_service(tmp_path: Path) -> None:
    config = tmp_path / "herald.yaml"
    config.write_text("broker: {host: localhost}\n")
    code, _, err = await herald("up", "--config", str(config))
    assert code == 2
    assert "configures none of the installed services" in err


async def test_a_missing_configuration_file_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = await herald("check-config", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml: cannot read the configuration" in err


async def test_a_running_service_logs_each_old_spelling_once_at_start(tmp_path: Path) -> None:
    config = tmp_path / "herald.yaml"
    config.write_text(
        f"broker: {{host: 127.0.0.1, port: {free_port()}, embedded: true, instance: demo}}\n"
        "health: {host: 127.0.0.1, port: 0}\n"
        "logging: {format: json}\n"
        f"log_archiver: {{directory: {tmp_path / 'logs'}, state_dir: {tmp_path / 'state'}}}\n"
        # Not run by `herald up` (disabled), but in the file the process read.
        "emailer: {enabled: false, failed: {enable: false}}\n"
    )
    up = await Child.python(
        "-m", "herald_shared.cli", "up", "--config", str(config), with_stderr=True
    )
    try:
        await up.wait_for_line(lambda line: "started log-archiver" in line)
        up.terminate()
        assert await up.wait() == 0
    finally:
        await up.close()
    entries = [json.loads(line) for line in up.lines if line.startswith("{")]
    deprecated = [entry for entry in entries if "deprecated" in entry["message"]]
    assert [(entry["level"], entry["message"]) for entry in deprecated] == [
        ("warning", f"{config}: emailer.failed.enable is deprecated; write enabled")
    ]


async def test_herald_says_its_version_and_run_help_names_the_installed_services() -> None:
    code, out, _ = await herald("--version")
    assert (code, out) == (0, f"herald {version('herald-shared')}\n")
    code, out, _ = await herald("run", "--help")
    assert code == 0
    listed = " ".join(out.split()).replace("- ", "-")  # argparse wraps the help text
    assert (
        "installed: chat-notifier, console, emailer, incident-forwarder, ingest, log-archiver"
        in listed
    )


async def test_in_herald_up_each_log_line_names_the_service_it_comes_from(tmp_path: Path) -> None:
    config = tmp_path / "herald.yaml"
    config.write_text(
        # Nothing listens there: both services say they cannot connect, each in its own name.
        f"broker: {{host: 127.0.0.1, port: {free_port()}, instance: t, reconnect_max: 1}}\n"
        "health: {host: 127.0.0.1, port: 0}\n"
        "logging: {format: json}\n"
        f"log_archiver: {{directory: {tmp_path / 'logs'}, state_dir: {tmp_path / 'state'}}}\n"
        f"metrics_writer: {{state_dir: {tmp_path / 'state'}, influxdb: {{enabled: false}}}}\n"
    )
    up = await Child.python(
        "-m", "herald_shared.cli", "up", "--config", str(config), with_stderr=True
    )

    def refused_by() -> set[str]:
        entries = [json.loads(line) for line in up.lines if line.startswith("{")]
        return {e.get("service", "") for e in entries if "cannot connect" in e["message"]}

    try:
        await up.wait_for_line(lambda _line: refused_by() == {"log-archiver", "metrics-writer"})
    finally:
        up.terminate()
        await up.wait()
        await up.close()


async def test_an_anonymous_mqtt_3_client_can_watch_the_embedded_broker(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "herald.yaml"
    config.write_text(
        f"broker: {{host: 127.0.0.1, port: {port}, embedded: true, instance: demo}}\n"
        "health: {host: 127.0.0.1, port: 0}\n"
        f"log_archiver: {{directory: {tmp_path / 'logs'}, state_dir: {tmp_path / 'state'}}}\n"
    )
    up = await Child.python(
        "-m", "herald_shared.cli", "up", "--config", str(config), with_stderr=True
    )
    try:
        await up.wait_for_line(lambda line: "started log-archiver" in line)
        # What `mosquitto_sub -V mqttv311 -p 1884 -t 'herald/#'` does: no user name, MQTT 3.1.1.
        async with aiomqtt.Client(
            "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V311
        ) as client:
            await client.subscribe("herald/v1/status/#")
            async with asyncio.timeout(20):
                async for message in client.messages:
                    if message.payload == b"online":
                        break
            assert str(message.topic) == "herald/v1/status/log-archiver/demo"
    finally:
        up.terminate()
        assert await up.wait() == 0
