"""Starting and stopping the real servers the tests run as child processes."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx


def stop(process: subprocess.Popen[bytes] | None, within: float = 15.0) -> None:
    """SIGTERM (servers save their state on the way out), then SIGKILL if it lingers."""
    if process is None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_answering(
    url: str, status: int, process: subprocess.Popen[bytes], within: float = 20.0
) -> bool:
    """True once ``url`` answers ``status``; False if the process died or time ran out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=0.5).status_code == status:
                return True
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return False
