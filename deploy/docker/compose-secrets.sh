#!/bin/sh
# Creates what docker-compose.yml reads from var/secrets/ (var/ is not in git): a random
# password per broker account, Grafana's admin password, and a self-signed certificate for
# Mosquitto's TLS listener (replace it with one your IoT consumers trust). Existing files are
# kept, so running it again changes nothing.
set -eu
cd "$(dirname "$0")/../.."
umask 077
mkdir -p var/secrets/mosquitto-tls
for account in herald-ingest herald-emailer herald-chat-notifier herald-incident-forwarder \
    herald-metrics-writer herald-log-archiver herald-console herald-operator iot; do
    file=var/secrets/mqtt-$account
    [ -s "$file" ] || openssl rand -hex 24 > "$file"
done
[ -s var/secrets/grafana-admin-password ] || openssl rand -hex 16 > var/secrets/grafana-admin-password
# The console's admin account: a random password and its bcrypt hash (what the console reads).
[ -s var/secrets/console-admin-password ] || openssl rand -hex 16 > var/secrets/console-admin-password
if [ ! -s var/secrets/console-admin ]; then
    password=$(cat var/secrets/console-admin-password)
    if command -v htpasswd >/dev/null 2>&1; then
        htpasswd -nbBC 10 "" "$password" | tr -d ':\n' > var/secrets/console-admin
    elif python3 -c "import bcrypt" 2>/dev/null; then
        python3 -c 'import bcrypt, sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(10)).decode(), end="")' \
            "$password" > var/secrets/console-admin
    else
        echo "compose-secrets.sh: install htpasswd (apache2-utils) or python3-bcrypt for the console's account hash" >&2
        exit 1
    fi
fi
tls=var/secrets/mosquitto-tls
if [ ! -s "$tls/tls.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=${MQTT_HOST:-localhost}" \
        -addext "subjectAltName=DNS:${MQTT_HOST:-localhost},DNS:mosquitto,IP:127.0.0.1" \
        -keyout "$tls/tls.key" -out "$tls/tls.crt" 2>/dev/null
    chmod 0644 "$tls/tls.crt" "$tls/tls.key"   # read by the mosquitto user inside the container
fi
echo "var/secrets/ is ready: herald-operator's password is in var/secrets/mqtt-herald-operator," \
    "the console's (user admin, http://127.0.0.1:9180/) in var/secrets/console-admin-password"
