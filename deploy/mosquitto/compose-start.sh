#!/bin/sh
# Mosquitto's start in docker-compose.yml: hash the accounts' passwords (mounted as compose
# secrets, one file per account) into the password files, then exec Mosquitto (PID 1, so
# `docker compose stop` reaches it and it saves its persistence database on the way out).
# Accounts named herald-… are Herald's own (passwd, listeners 1883 and 8883); every other one is
# a consumer (passwd-consumers, listener 8884), as mosquitto.conf explains.
set -eu
run=/mosquitto/run
: > "$run/passwd"
: > "$run/passwd-consumers"
chmod 0700 "$run/passwd" "$run/passwd-consumers"
for file in /run/secrets/mqtt-*; do
    account=${file#/run/secrets/mqtt-}
    case "$account" in
        tls.*) continue ;;
        herald-*) passwd=$run/passwd ;;
        *) passwd=$run/passwd-consumers ;;
    esac
    mosquitto_passwd -b "$passwd" "$account" "$(cat "$file")"
done
chown mosquitto:mosquitto "$run/passwd" "$run/passwd-consumers"
sed 's|^password_file /mosquitto/config/|password_file /mosquitto/run/|' /mosquitto/config/mosquitto.conf > "$run/mosquitto.conf"
exec mosquitto -c "$run/mosquitto.conf"
