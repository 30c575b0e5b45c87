"""The image's HEALTHCHECK: exit 0 when /livez on the health port answers 200.

The slim image has no curl; Python's standard library is enough. The port is
HERALD_HEALTH__PORT when set (the same variable overrides health.port), else 9100.
"""

import os
import sys
import urllib.request

port = os.environ.get("HERALD_HEALTH__PORT", "9100")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=4) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError:
    sys.exit(1)
