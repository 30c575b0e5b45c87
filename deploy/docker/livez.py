"""The image's HEALTHCHECK: exit 0 when /livez on the health port answers 200.

The slim image has no curl; Python's standard library is enough. The port is the one the
service itself serves on: ``health.port`` from $HERALD_CONFIG with the HERALD_HEALTH__PORT
override applied, read by the same loader the service uses (9100 when neither sets it).
"""

import os
import sys
import urllib.request

from herald_shared import config
from herald_shared.settings import HealthSettings


def health_port() -> int:
    try:
        document = config.load(os.environ.get(config.ENV_CONFIG_PATH, "herald.yaml"))
        return document.section("health", HealthSettings).port
    except config.ConfigError:
        # The service refuses such a file and exits; the environment is still the best guess.
        return int(os.environ.get("HERALD_HEALTH__PORT", "9100"))


try:
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port()}/livez", timeout=4) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError:
    sys.exit(1)
