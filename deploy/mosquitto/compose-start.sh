#!/bin/sh
# Mosquitto's start in docker-compose.yml: hash the accounts' passwords (mounted as compose
# secrets, one file per account) into the password file, then exec Mosquitto (PID 1, so
# `docker compose stop` reaches it and it saves its persistence database on the way out).
set -eu
passwd=/mosquitto/run/passwd
: > "$passwd"
chmod 0700 "$passwd"
for file in /run/secrets/mqtt-*; do
    account=${file#/run/secrets/mqtt-}
    case "$account" in tls.*) continue ;; esac
    mosquitto_passwd -b "$passwd" "$account" "$(cat "$file")"
done
chown mosquitto:mosquitto "$passwd"
sed 's|^password_file .*|password_file /mosquitto/run/passwd|' /mosquitto/config/mosquitto.conf > /mosquitto/run/mosquitto.conf
exec mosquitto -c /mosquitto/run/mosquitto.conf
