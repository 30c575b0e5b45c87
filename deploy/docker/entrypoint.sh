#!/bin/sh
# Herald's container entrypoint. Without arguments it runs the image's service
# (`herald run $HERALD_SERVICE`, configuration from $HERALD_CONFIG); with arguments it runs
# `herald <arguments>`, e.g. `check-config` or `qlik-sim serve --port 4242`.
# `exec` replaces this shell with Python, so Python is PID 1 and gets SIGTERM directly.
set -eu
if [ "$#" -eq 0 ]; then
    set -- run "${HERALD_SERVICE:?the image was built without SERVICE}"
fi
exec herald "$@"
