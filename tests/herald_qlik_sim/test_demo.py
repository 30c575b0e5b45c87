"""`herald demo`: the first thing a new user runs."""

from __future__ import annotations

import os
from pathlib import Path

from herald_testkit.ports import free_port
from herald_testkit.processes import Child


async def test_the_demo_shows_a_failure_an_abort_and_a_recovery_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    config = tmp_path / "herald.yaml"
    udp = free_port(kind=2)  # SOCK_DGRAM
    config.write_text(
        f"""
broker: {{host: 127.0.0.1, port: {free_port()}, embedded: true, instance: demo}}
health: {{host: 127.0.0.1, port: {free_port()}}}
logging: {{level: WARNING}}
qlik:
  qrs:
    url: https://127.0.0.1:{free_port()}
    client_cert: {tmp_path}/certs/client.pem
    client_key: {tmp_path}/certs/client_key.pem
    ca_cert: {tmp_path}/certs/root.pem
    script_log_retry_delay: 0.2
ingest: {{state_dir: {tmp_path}/state, udp: {{host: 127.0.0.1, port: {udp}}}}}
log_archiver: {{directory: {tmp_path}/logs, state_dir: {tmp_path}/state, include_aborted: true}}
"""
    )
    earlier = tmp_path / "logs" / "2026-11-01" / "an-earlier-run.log"  # from a run before this one
    earlier.parent.mkdir(parents=True)
    earlier.write_text("an earlier demo's script log\n")
    os.utime(earlier, (0, 0))
    demo = await Child.python("-m", "herald_shared.cli", "demo", "--config", str(config))
    try:
        await demo.wait_for_line(lambda line: "Herald keeps running" in line, within=60)
    finally:
        demo.terminate()
        assert await demo.wait() == 0
    output = "\n".join(demo.lines)
    assert 'EVENT      task_failed "Reload Sales dashboard"' in output
    assert 'EVENT      task_aborted "Reload Inventory snapshot"' in output
    assert "[recovers from the failure of" in output
    assert output.count("DELIVERY   log-archiver/archive delivered") == 2
    archived = sorted(set((tmp_path / "logs").rglob("*.log")) - {earlier})
    assert len(archived) == 2
    for path in archived:
        assert str(path) in output
    assert str(earlier) not in output  # the list is this run's archive, not the folder's
