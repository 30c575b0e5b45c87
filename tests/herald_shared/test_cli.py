"""The herald command as a user runs it."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
