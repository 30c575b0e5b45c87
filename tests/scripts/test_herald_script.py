"""scripts/herald, the command the README's quickstart gives, as a user types it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_relative_config_path_means_the_file_in_the_users_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(f"log_archiver: {{directory: {tmp_path / 'logs'}}}\n")
    done = subprocess.run(
        [str(ROOT / "scripts" / "herald"), "check-config", "--config", "mine.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "cannot read the configuration" not in done.stderr
    assert "log-archiver" in done.stdout
