"""The image's HEALTHCHECK script (deploy/docker/livez.py) probes the port the service serves on."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from herald_testkit.ports import free_port
from herald_testkit.processes import Child

LIVEZ = Path(__file__).resolve().parents[2] / "deploy" / "docker" / "livez.py"


async def probe(config: Path) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(LIVEZ), env={**env, "HERALD_CONFIG": str(config)}
    )
    return await process.wait()


async def test_a_health_port_set_in_the_file_is_the_one_probed(tmp_path: Path) -> None:
    config = tmp_path / "herald.yaml"
    config.write_text(
        f"broker: {{host: 127.0.0.1, port: {free_port()}, embedded: true}}\n"
        f"health: {{host: 127.0.0.1, port: {free_port()}}}\n"
        f"log_archiver: {{directory: {tmp_path / 'logs'}, state_dir: {tmp_path / 'state'}}}\n"
    )
    service = await Child.python("-m", "herald_shared.cli", "up", "--config", str(config))
    try:
        for _ in range(100):
            if await probe(config) == 0:
                break
            await asyncio.sleep(0.2)
        assert await probe(config) == 0
    finally:
        service.terminate()
        assert await service.wait() == 0
    assert await probe(config) == 1  # nothing answers once it has stopped
