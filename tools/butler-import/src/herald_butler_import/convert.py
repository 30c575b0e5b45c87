"""A Butler configuration (its ``production.yaml`` layout) as a Herald document, with a report.

Every enabled Butler reload alert gets its Herald counterpart with the same recipients,
custom-property gates, rate limits, URLs and template choice; every Butler key read is listed as
mapped, every one Herald has no counterpart for is listed with the reason, and every default that
behaves differently is said once. Secrets (SMTP and InfluxDB passwords, tokens, webhook URLs, New
Relic insert keys) become ``<key>_file`` references to files in ``<out>/secrets/``; their values
are kept in :attr:`Import.secrets` for the caller to write (mode 0600), never in the document or
the report. Butler's keys: https://github.com/ptarmiganlabs/butler/blob/master/src/config/production_template.yaml
and docs/migrating-from-butler.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Import", "Report", "convert"]

_BUTLER_DOCS = "https://butler.ptarmiganlabs.com"
# The name given to the one account of a Butler file older than 8.5
# (thirdPartyToolsCredentials.newRelic: {insertApiKey, accountId}).
LEGACY_NEW_RELIC_ACCOUNT = "butler"


@dataclass
class Report:
    mapped: list[str] = field(default_factory=list)  # "Butler.x.y → herald.key"
    unmapped: list[str] = field(default_factory=list)  # "Butler.x.y: why"
    differs: list[str] = field(default_factory=list)  # a default that behaves differently
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        parts = []
        for title, rows in (
            ("Mapped", self.mapped),
            ("No counterpart in Herald", self.unmapped),
            ("Behaves differently in Herald", self.differs),
            ("To do", self.notes),
        ):
            parts.append(f"{title} ({len(rows)}):")
            parts += [f"  - {row}" for row in rows] or ["  (none)"]
        return "\n".join(parts) + "\n"


@dataclass
class Import:
    document: dict[str, Any]
    report: Report
    secrets: dict[str, str]  # file name in <out>/secrets → value
    templates: list[tuple[str, str, str]]  # (kind: email|slack|teams, Butler file name, outcome)


def _get(node: Any, path: str, default: Any = None) -> Any:
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return default if node is None else node


def _on(node: Any, path: str = "enable") -> bool:
    return _get(node, path) is True or str(_get(node, path, "")).lower() == "true"


class _Converter:
    def __init__(self, butler: dict[str, Any], secrets_dir: Path) -> None:
        self.b = butler
        self.report = Report()
        self.secrets: dict[str, str] = {}
        self.templates: list[tuple[str, str, str]] = []
        self.secrets_dir = secrets_dir
        # New Relic API ("event", "log") -> the account of a pre-8.5 single-account file.
        self._legacy_accounts: dict[str, list[str]] = {}

    def map(self, butler_key: str, herald_key: str) -> None:
        self.report.mapped.append(f"Butler.{butler_key} → {herald_key}")

    def none(self, butler_key: str, why: str) -> None:
        self.report.unmapped.append(f"Butler.{butler_key}: {why}")

    def secret(self, target: dict[str, Any], key: str, value: Any, name: str, where: str) -> None:
        """``key_file`` pointing at secrets/<name>; the value goes to :attr:`secrets`."""
        if value in (None, ""):
            return
        self.secrets[name] = str(value)
        target[f"{key}_file"] = str(self.secrets_dir / name)
        self.map(where, f"{key}_file (secret, secrets/{name})")

    # --- sections ---------------------------------------------------------------------------

    def qlik(self) -> dict[str, Any]:
        qrs_b = _get(self.b, "configQRS", {})
        scheme = "https" if _get(qrs_b, "useSSL", True) else "http"
        qrs: dict[str, Any] = {
            "url": f"{scheme}://{_get(qrs_b, 'host', 'localhost')}:{_get(qrs_b, 'port', 4242)}",
            "client_cert": _get(self.b, "cert.clientCert"),
            "client_key": _get(self.b, "cert.clientCertKey"),
            "ca_cert": _get(self.b, "cert.clientCertCA"),
        }
        self.map("configQRS.host/port/useSSL", "qlik.qrs.url")
        self.map(
            "cert.clientCert/clientCertKey/clientCertCA", "qlik.qrs.client_cert/client_key/ca_cert"
        )
        if _get(qrs_b, "rejectUnauthorized") is False:
            self.report.differs.append(
                "configQRS.rejectUnauthorized: false: Herald verifies the QRS certificate against "
                "cert.clientCertCA (qlik.qrs.verify: true). Sense's own certificates pass when "
                "qlik.qrs.url names the host the certificate was issued for; set verify: false only "
                "if it does not."
            )
        for header in _get(qrs_b, "headers.static", []) or []:
            if str(header.get("name", "")).lower() == "x-qlik-user":
                qrs["user_header"] = header.get("value")
                self.map("configQRS.headers.static[X-Qlik-User]", "qlik.qrs.user_header")
            else:
                qrs.setdefault("headers", {})[str(header.get("name"))] = str(header.get("value"))
                self.map(f"configQRS.headers.static[{header.get('name')}]", "qlik.qrs.headers")
        section: dict[str, Any] = {"qrs": {k: v for k, v in qrs.items() if v is not None}}
        for butler_key, herald_key in (
            ("qmc", "qmc_url"),
            ("hub", "hub_url"),
            ("appBaseUrl", "app_base_url"),
        ):
            value = _get(self.b, f"qlikSenseUrls.{butler_key}")
            if value:
                section[herald_key] = value
                self.map(f"qlikSenseUrls.{butler_key}", f"qlik.{herald_key}")
        links = [
            {
                "id": str(link.get("id")),
                "text": str(link.get("linkText", "")),
                "url": str(link.get("url")),
                "comment": str(link.get("comment") or ""),
            }
            for link in _get(self.b, "genericUrls", []) or []
            if isinstance(link, dict) and link.get("url")
        ]
        if links:
            section["generic_links"] = links
            self.map(
                "genericUrls[].id/linkText/comment/url", "qlik.generic_links[].id/text/comment/url"
            )
        # The event carries this many lines; each destination takes its own count from them.
        heads, tails = (
            _line_counts(self.b, "headScriptLogLines"),
            _line_counts(self.b, "tailScriptLogLines"),
        )
        if heads or tails:
            section["script_log"] = {
                "head_lines": max([15, *heads]),
                "tail_lines": max([25, *tails]),
            }
            self.map(
                "*.headScriptLogLines/tailScriptLogLines (the largest)",
                "qlik.script_log.head_lines/tail_lines (what every event carries)",
            )
        return section

    def ingest(self) -> dict[str, Any] | None:
        udp_b = _get(self.b, "udpServerConfig", {})
        if not _on(udp_b):
            self.none(
                "udpServerConfig.enable: false",
                "Butler receives no datagrams; the ingest section is left out",
            )
            return None
        udp = {
            "host": _get(udp_b, "serverHost", "0.0.0.0"),  # noqa: S104 (Butler's bind address)
            "port": int(_get(udp_b, "portTaskFailure", 9998)),
            "max_datagram_bytes": int(_get(udp_b, "maxMessageSize", 65507)),
        }
        self.map(
            "udpServerConfig.serverHost/portTaskFailure/maxMessageSize",
            "ingest.udp.host/port/max_datagram_bytes",
        )
        section: dict[str, Any] = {"udp": udp}
        if _on(udp_b, "enableSourceValidation"):
            # Addresses, CIDR ranges and host names alike: ingest resolves the names.
            section["allowed_sources"] = [str(s) for s in _get(udp_b, "allowedSources", []) or []]
            self.map("udpServerConfig.allowedSources", "ingest.allowed_sources")
        for key, why in (
            (
                "messageQueue",
                "Herald keeps an on-disk inbox and enriches ingest.enrichment_concurrency datagrams at once",
            ),
            ("queueMetrics", "Herald's queue figures are Prometheus metrics on /metrics"),
        ):
            if _get(udp_b, key) is not None:
                self.none(f"udpServerConfig.{key}", why)
        if _on(udp_b, "rateLimit.enable"):
            section["max_datagrams_per_minute"] = int(
                _get(udp_b, "rateLimit.maxMessagesPerMinute", 600)
            )
            self.map(
                "udpServerConfig.rateLimit.maxMessagesPerMinute", "ingest.max_datagrams_per_minute"
            )
            self.report.differs.append(
                "udpServerConfig.rateLimit: datagrams over ingest.max_datagrams_per_minute are "
                "dead-lettered (herald/v1/dead-letter/ingest) and counted, not dropped; "
                "duplicates do not use the budget"
            )
        status_topic = _get(self.b, "mqttConfig.taskFailureServerStatusTopic")
        if _on(self.b, "mqttConfig.enable") and status_topic:
            section["udp_status_topic"] = str(status_topic)
            self.map("mqttConfig.taskFailureServerStatusTopic", "ingest.udp_status_topic")
            self.report.differs.append(
                "mqttConfig.taskFailureServerStatusTopic: ingest publishes start/error on "
                "Herald's broker (the broker: section), not on incident_forwarder.butler_mqtt."
                "broker; if the consumers listen on the other broker, bridge that topic or point "
                "both at one broker, and let the herald-ingest account write it"
            )
        ttl = _get(udp_b, "deduplication.ttlMinutes")
        if ttl is not None:
            section["duplicate_window"] = f"{int(ttl)}m"
            self.map("udpServerConfig.deduplication.ttlMinutes", "ingest.duplicate_window")
        return section

    # --- e-mail -----------------------------------------------------------------------------

    def _email_on(self, block: str) -> bool:
        return _on(self.b, "emailNotification.enable") and _on(
            self.b, f"emailNotification.{block}.enable"
        )

    def emailer(self, template_dir: Path) -> dict[str, Any] | None:
        mail = _get(self.b, "emailNotification", {})
        if not _on(mail):
            self.none(
                "emailNotification.enable: false",
                "no e-mail alerts; the emailer section is left out",
            )
            return None
        section: dict[str, Any] = {"smtp": self._smtp(mail), "template_dir": str(template_dir)}
        blocks = (
            ("reloadTaskFailure", "failed"),
            ("reloadTaskAborted", "aborted"),
            ("reloadTaskSuccess", "succeeded"),
        )
        for block, outcome in blocks:
            section[outcome] = self._outcome(mail, block, outcome)
        senders = [
            section[o].get("from_address") for _, o in blocks if section[o].get("from_address")
        ]
        if senders:
            section["from_address"] = senders[0]
        section["recovered"] = {"enabled": False}
        self.report.differs.append(
            'emailer.recovered: Herald can mail "the task runs again" to whoever heard of the '
            "failure; Butler has no such mail, so the import leaves it off (enabled: false)"
        )
        for block in (
            "distributeTaskSuccess",
            "distributeTaskFailure",
            "preloadTaskSuccess",
            "preloadTaskFailure",
        ):
            if _on(mail, f"{block}.enable"):
                self.none(
                    f"emailNotification.{block}",
                    "Herald has one e-mail block per outcome for every task type; its reload blocks "
                    "are limited to reload tasks by the import (when: task_types: [reload]): widen "
                    "their when: to send distribute/preload mails with the same recipients",
                )
        for block in ("serviceStopped", "serviceStarted"):
            if _get(mail, block) is not None:
                self.none(
                    f"emailNotification.{block}", "Windows service monitoring is not part of Herald"
                )
        return section

    def _smtp(self, mail: dict[str, Any]) -> dict[str, Any]:
        smtp_b = _get(mail, "smtp", {})
        smtp: dict[str, Any] = {
            "host": _get(smtp_b, "host", "localhost"),
            "port": _get(smtp_b, "port"),
        }
        if _get(smtp_b, "secure") is True:
            smtp["tls"] = "tls"
        elif _get(smtp_b, "tls.ignoreTLS") is True:
            smtp["tls"] = "none"
        else:
            smtp["tls"] = "starttls"
            # nodemailer reads requireTLS/ignoreTLS at the top level, not inside tls: where Butler
            # has them they may never have applied, so say what Herald does either way.
            self.report.differs.append(
                "emailNotification.smtp.secure: false: Herald's starttls requires STARTTLS (a "
                "server that does not offer it is an error, where nodemailer may send in clear); "
                "set emailer.smtp.tls: none for a server without TLS"
            )
        self.map("emailNotification.smtp.host/port/secure/tls", "emailer.smtp.host/port/tls")
        if _get(smtp_b, "tls.rejectUnauthorized") is False:
            self.report.differs.append(
                "emailNotification.smtp.tls.rejectUnauthorized: false: Herald verifies the SMTP "
                "server's certificate (emailer.smtp.verify: true); give emailer.smtp.ca_file for a "
                "private CA"
            )
        if _get(smtp_b, "tls.serverName"):
            smtp["tls_server_name"] = str(_get(smtp_b, "tls.serverName"))
            self.map("emailNotification.smtp.tls.serverName", "emailer.smtp.tls_server_name")
        if _on(smtp_b, "auth.enable"):
            smtp["username"] = _get(smtp_b, "auth.user")
            self.map("emailNotification.smtp.auth.user", "emailer.smtp.username")
            self.secret(
                smtp,
                "password",
                _get(smtp_b, "auth.password"),
                "smtp-password",
                "emailNotification.smtp.auth.password",
            )
        return {k: v for k, v in smtp.items() if v is not None}

    def _outcome(self, mail: dict[str, Any], block: str, outcome: str) -> dict[str, Any]:
        b = _get(mail, block, {})
        where = f"emailNotification.{block}"
        if not _on(b):
            self.none(f"{where}.enable: false", f"emailer.{outcome} is written disabled")
            return {"enabled": False}
        result: dict[str, Any] = {"enabled": True, "when": {"task_types": ["reload"]}}
        if _get(b, "subject"):
            result["subject"] = _subject(str(_get(b, "subject")))
            self.map(f"{where}.subject", f"emailer.{outcome}.subject (Handlebars → Jinja2)")
        for butler_key, herald_key in (
            ("priority", "priority"),
            ("fromAddress", "from_address"),
            ("rateLimit", "rate_limit"),
        ):
            if _get(b, butler_key) is not None:
                result[herald_key] = _get(b, butler_key)
                self.map(f"{where}.{butler_key}", f"emailer.{outcome}.{herald_key}")
        result["recipients"] = [
            str(r) for r in _get(b, "recipients", []) or [] if "<" not in str(r) or "@" in str(r)
        ]
        self.map(f"{where}.recipients", f"emailer.{outcome}.recipients")
        if _on(b, "alertEnableByCustomProperty.enable"):
            name = _get(b, "alertEnableByCustomProperty.customPropertyName")
            value = str(_get(b, "alertEnableByCustomProperty.enabledValue", "Yes"))
            result["recipients_when"] = {"task_custom_properties": {name: [value]}}
            self.map(f"{where}.alertEnableByCustomProperty", f"emailer.{outcome}.recipients_when")
        elif outcome == "aborted":
            self.report.differs.append(
                f"{where}.alertEnableByCustomProperty is off: every aborted reload is mailed to "
                "the static recipients (Herald's default for aborted, too)"
            )
        address_property = _get(b, "alertEnabledByEmailAddress.customPropertyName")
        result["recipients_custom_property"] = address_property
        self.map(
            f"{where}.alertEnabledByEmailAddress.customPropertyName",
            f"emailer.{outcome}.recipients_custom_property",
        )
        result["app_owner"] = self._app_owner(b, where, outcome)
        template = _get(b, "htmlTemplateFile")
        if template:
            name = Path(str(template)).name.removesuffix(".handlebars")
            result["html_template"] = f"{outcome}.html"
            self.templates.append(("email", name, outcome))
            self.map(
                f"{where}.htmlTemplateFile/bodyFileDirectory",
                f"emailer.{outcome}.html_template ({outcome}.html, converted)",
            )
        for butler_key, herald_key in (
            ("headScriptLogLines", "head_lines"),
            ("tailScriptLogLines", "tail_lines"),
        ):
            if _get(b, butler_key) is not None:
                result[herald_key] = int(_get(b, butler_key))
                self.map(f"{where}.{butler_key}", f"emailer.{outcome}.{herald_key}")
        return result

    def _app_owner(self, b: dict[str, Any], where: str, outcome: str) -> dict[str, Any]:
        owner = _get(b, "appOwnerAlert")
        if owner is None:
            return {"enabled": False}
        self.map(f"{where}.appOwnerAlert", f"emailer.{outcome}.app_owner")
        return {
            "enabled": _on(owner),
            "include_all": _get(owner, "includeOwner.includeAll", True) is not False,
            "include": _owners(owner, "includeOwner.user"),
            "exclude": _owners(owner, "excludeOwner.user"),
        }

    # --- chat -------------------------------------------------------------------------------

    def chat(self, template_root: Path) -> dict[str, Any] | None:
        slack = self._chat_targets("slackNotification", "slack", template_root)
        teams = self._chat_targets("teamsNotification", "teams", template_root)
        if not slack and not teams:
            return None
        return {"slack": slack, "teams": teams}

    def _chat_targets(self, section: str, kind: str, template_root: Path) -> list[dict[str, Any]]:
        root = _get(self.b, section, {})
        targets: list[dict[str, Any]] = []
        if not _on(root):
            self.none(f"{section}.enable: false", f"no {kind} messages")
            return targets
        for block, outcome in (("reloadTaskFailure", "failed"), ("reloadTaskAborted", "aborted")):
            b = _get(root, block, {})
            where = f"{section}.{block}"
            if not _on(b):
                continue
            name = f"butler-{outcome}"
            target: dict[str, Any] = {
                "name": name,
                "outcomes": [outcome],
                "when": {"task_types": ["reload"]},
            }
            self.secret(
                target,
                "webhook_url",
                _get(b, "webhookURL"),
                f"{kind}-{outcome}-webhook-url",
                f"{where}.webhookURL",
            )
            pairs = [
                ("rateLimit", "rate_limit"),
                ("messageType", "message_type"),
                ("headScriptLogLines", "head_lines"),
                ("tailScriptLogLines", "tail_lines"),
            ]
            if kind == "slack":
                pairs += [
                    ("fromUser", "username"),
                    ("iconEmoji", "icon_emoji"),
                    ("channel", "channel"),
                ]
            for butler_key, herald_key in pairs:
                if _get(b, butler_key) is not None:
                    target[herald_key] = _get(b, butler_key)
                    self.map(f"{where}.{butler_key}", f"chat_notifier.{kind}[{name}].{herald_key}")
            if kind == "teams":
                url = str(_get(b, "webhookURL", ""))
                target["format"] = (
                    "message_card" if "webhook.office.com" in url else "adaptive_card"
                )
                self.map(f"{where}.webhookURL (its host)", f"chat_notifier.teams[{name}].format")
            if _get(b, "templateFile"):
                target["template_dir"] = str(template_root / f"{kind}-{outcome}")
                self.templates.append(
                    (
                        kind,
                        Path(str(_get(b, "templateFile"))).name.removesuffix(".handlebars"),
                        outcome,
                    )
                )
                self.map(
                    f"{where}.templateFile",
                    f"chat_notifier.{kind}[{name}].template_dir ({outcome}.yaml, converted)",
                )
            if _get(b, "basicMsgTemplate"):
                # Herald also sends the basic message when a formatted one fails: map it always.
                target["basic_title"] = _subject(str(_get(b, "basicMsgTemplate")))
                self.map(
                    f"{where}.basicMsgTemplate",
                    f"chat_notifier.{kind}[{name}].basic_title (Handlebars → Jinja2)",
                )
            targets.append(target)
        for block in ("serviceStopped", "serviceStarted", "restMessage"):
            if _get(root, block) is not None:
                self.none(
                    f"{section}.{block}",
                    "Windows service monitoring and Butler's REST API are not part of Herald",
                )
        return targets

    # --- incidents --------------------------------------------------------------------------

    def incidents(self) -> dict[str, Any] | None:
        section: dict[str, Any] = {}
        relic = self._new_relic()
        if relic:
            section["new_relic"] = relic
        signl4 = self._signl4()
        if signl4:
            section["signl4"] = signl4
        webhooks = self._webhooks()
        if webhooks:
            section["webhooks"] = webhooks
        mqtt = self._mqtt()
        if mqtt:
            section["butler_mqtt"] = mqtt
        return section or None

    def _new_relic(self) -> dict[str, Any] | None:
        nr = _get(self.b, "incidentTool.newRelic", {})
        if not _on(nr):
            return None
        section: dict[str, Any] = {"accounts": []}
        accounts = _get(self.b, "thirdPartyToolsCredentials.newRelic", []) or []
        if isinstance(accounts, dict):  # before Butler 8.5: one account, which got everything
            accounts = [{"accountName": LEGACY_NEW_RELIC_ACCOUNT, **accounts}]
            for kind in ("event", "log"):
                self._legacy_accounts.setdefault(kind, [LEGACY_NEW_RELIC_ACCOUNT])
        for index, account in enumerate(accounts):
            entry: dict[str, Any] = {
                "name": str(account.get("accountName")),
                "account_id": str(account.get("accountId")),
            }
            self.secret(
                entry,
                "insert_key",
                account.get("insertApiKey"),
                f"new-relic-{index + 1}-insert-key",
                f"thirdPartyToolsCredentials.newRelic[{index}].insertApiKey",
            )
            section["accounts"].append(entry)
        self.map(
            "thirdPartyToolsCredentials.newRelic[].accountName/accountId",
            "incident_forwarder.new_relic.accounts[].name/account_id",
        )
        if _get(nr, "url.event"):
            section["event_url"] = _get(nr, "url.event")
        if _get(nr, "url.log"):
            section["log_url"] = _get(nr, "url.log")
        self.map(
            "incidentTool.newRelic.url.event/log", "incident_forwarder.new_relic.event_url/log_url"
        )
        shared = _get(nr, "reloadTaskFailure.sharedSettings", {})
        section["headers"] = {
            str(h["name"]): str(h["value"]) for h in _get(shared, "header", []) or []
        }
        section["static_attributes"] = {
            str(a["name"]): str(a["value"]) for a in _get(shared, "attribute.static", []) or []
        }
        self.map(
            "incidentTool.newRelic.reloadTaskFailure.sharedSettings.header/attribute.static",
            "incident_forwarder.new_relic.headers/static_attributes",
        )
        for kind in ("event", "log"):
            section[kind] = self._new_relic_kind(nr, kind, shared)
        return section

    def _new_relic_kind(
        self, nr: dict[str, Any], kind: str, shared: dict[str, Any]
    ) -> dict[str, Any]:
        outcomes = [
            o
            for block, o in (("reloadTaskFailure", "failed"), ("reloadTaskAborted", "aborted"))
            if _on(nr, f"{block}.destination.{kind}.enable")
        ]
        result: dict[str, Any] = {"enabled": bool(outcomes), "when": {"task_types": ["reload"]}}
        if not outcomes:
            return {"enabled": False}
        result["outcomes"] = outcomes
        first = "reloadTaskFailure" if "failed" in outcomes else "reloadTaskAborted"
        d = _get(nr, f"{first}.destination.{kind}", {})
        where = f"incidentTool.newRelic.{first}.destination.{kind}"
        always: list[str] = []
        if _on(d, "sendToAccount.always.enable"):
            always += [str(a) for a in _get(d, "sendToAccount.always.account", []) or []]
            self.map(
                f"{where}.sendToAccount.always",
                f"incident_forwarder.new_relic.{kind}.always_accounts",
            )
        # Butler before 8.5: one list per API for failed and aborted alike, as always_accounts.
        legacy = [str(a) for a in _get(nr, f"destinationAccount.{kind}", []) or []]
        source = f"incidentTool.newRelic.destinationAccount.{kind}"
        if not legacy and kind in self._legacy_accounts:
            legacy, source = self._legacy_accounts[kind], "thirdPartyToolsCredentials.newRelic"
        if legacy:
            always += legacy
            self.map(
                f"{source} (before Butler 8.5)",
                f"incident_forwarder.new_relic.{kind}.always_accounts",
            )
        if always:
            result["always_accounts"] = list(dict.fromkeys(always))  # Butler removes repeats
        for block, key in (
            ("reloadTaskFailure", "failed_account_property"),
            ("reloadTaskAborted", "aborted_account_property"),
        ):
            name = _get(
                nr, f"{block}.destination.{kind}.sendToAccount.byCustomProperty.customPropertyName"
            )
            if name:
                result[key] = name
                self.map(
                    f"incidentTool.newRelic.{block}.destination.{kind}.sendToAccount.byCustomProperty",
                    f"incident_forwarder.new_relic.{kind}.{key}",
                )
        result["static_attributes"] = {
            str(a["name"]): str(a["value"]) for a in _get(d, "attribute.static", []) or []
        }
        result["use_task_tags"] = _get(d, "attribute.dynamic.useTaskTags", True) is not False
        result["use_app_tags"] = _get(d, "attribute.dynamic.useAppTags", True) is not False
        self.map(
            f"{where}.attribute",
            f"incident_forwarder.new_relic.{kind}.static_attributes/use_task_tags/use_app_tags",
        )
        if kind == "log" and _get(d, "tailScriptLogLines") is not None:
            result["tail_lines"] = int(_get(d, "tailScriptLogLines"))
        if _get(shared, "rateLimit") is not None:
            result["rate_limit"] = _get(shared, "rateLimit")
            self.map(
                "incidentTool.newRelic.reloadTaskFailure.sharedSettings.rateLimit",
                f"incident_forwarder.new_relic.{kind}.rate_limit",
            )
        if len(outcomes) == 2:
            self.report.differs.append(
                f"incidentTool.newRelic.*.destination.{kind}: Herald has one {kind} setting for failed "
                "and aborted; the reloadTaskFailure block's attributes and always-accounts were taken"
            )
        return result

    def _signl4(self) -> dict[str, Any] | None:
        s4 = _get(self.b, "incidentTool.signl4", {})
        if not _on(s4):
            return None
        outcomes = [
            o
            for block, o in (("reloadTaskFailure", "failed"), ("reloadTaskAborted", "aborted"))
            if _on(s4, f"{block}.enable")
        ]
        if not outcomes:
            return None
        section: dict[str, Any] = {
            "enabled": True,
            "outcomes": outcomes,
            "when": {"task_types": ["reload"]},
        }
        self.secret(section, "url", _get(s4, "url"), "signl4-url", "incidentTool.signl4.url")
        section["severity"] = {
            "failed": int(_get(s4, "reloadTaskFailure.severity", 1)),
            "aborted": int(_get(s4, "reloadTaskAborted.severity", 10)),
        }
        first = "reloadTaskFailure" if "failed" in outcomes else "reloadTaskAborted"
        section["service_name"] = str(_get(s4, f"{first}.serviceName", "Qlik Sense"))
        section["rate_limit"] = _get(s4, f"{first}.rateLimit", 15)
        self.map(
            "incidentTool.signl4.reloadTask*.enable/severity/serviceName/rateLimit",
            "incident_forwarder.signl4.outcomes/severity/service_name/rate_limit",
        )
        self.report.differs.append(
            "incidentTool.signl4: Herald resolves the Signl4 alert when the task next succeeds (resolve_on_recovery: true)"
        )
        for block in ("reloadTaskFailure", "reloadTaskAborted"):
            if _on(s4, f"{block}.enable") and _get(s4, f"{block}.includeApp.includeAll") is False:
                self.none(
                    f"incidentTool.signl4.{block}.includeApp.appId",
                    "Herald's when: selects apps by name, stream, tag or custom property, not by id: add e.g. when: app_names",
                )
        return section

    def _webhooks(self) -> list[dict[str, Any]]:
        hooks = _get(self.b, "webhookNotification", {})
        if not _on(hooks):
            return []
        found: dict[str, dict[str, Any]] = {}
        for block, outcome in (("reloadTaskFailure", "failed"), ("reloadTaskAborted", "aborted")):
            for index, hook in enumerate(_get(hooks, f"{block}.webhooks", []) or []):
                url = str(hook.get("webhookURL", ""))
                method = str(hook.get("httpMethod", "POST")).upper()
                key = f"{method} {url}"
                if key not in found:
                    entry: dict[str, Any] = {
                        "name": f"butler-{len(found) + 1}",
                        "method": method,
                        "outcomes": [],
                        "when": {"task_types": ["reload"]},
                    }
                    self.secret(
                        entry,
                        "url",
                        url,
                        f"webhook-{len(found) + 1}-url",
                        f"webhookNotification.{block}.webhooks[{index}].webhookURL",
                    )
                    entry["rate_limit"] = _get(hooks, f"{block}.rateLimit", 300)
                    cert = hook.get("cert") or {}
                    if cert.get("enable"):
                        entry["ca_file"] = cert.get("certCA")
                        entry["verify"] = cert.get("rejectUnauthorized", True) is not False
                    found[key] = entry
                found[key]["outcomes"].append(outcome)
                self.map(
                    f"webhookNotification.{block}.webhooks[{index}]",
                    f"incident_forwarder.webhooks[{found[key]['name']}]",
                )
        return list(found.values())

    def _mqtt(self) -> dict[str, Any] | None:
        mqtt = _get(self.b, "mqttConfig", {})
        if not _on(mqtt):
            return None
        section: dict[str, Any] = {
            "enabled": True,
            "broker": {
                "host": _get(mqtt, "brokerHost", "localhost"),
                "port": int(_get(mqtt, "brokerPort", 1883)),
                "protocol": "3.1.1",
            },
        }
        self.map(
            "mqttConfig.brokerHost/brokerPort", "incident_forwarder.butler_mqtt.broker.host/port"
        )
        for butler_key, herald_key in (
            ("taskFailureTopic", "task_failure_topic"),
            ("taskFailureFullTopic", "task_failure_full_topic"),
            ("taskAbortedTopic", "task_aborted_topic"),
            ("taskAbortedFullTopic", "task_aborted_full_topic"),
            ("taskFailureSendFull", "task_failure_send_full"),
            ("taskAbortedSendFull", "task_aborted_send_full"),
        ):
            if _get(mqtt, butler_key) is not None:
                section[herald_key] = _get(mqtt, butler_key)
                self.map(f"mqttConfig.{butler_key}", f"incident_forwarder.butler_mqtt.{herald_key}")
        self.map(
            "mqttConfig (connect notice on qliksense/butler/mqtt/status)",
            "incident_forwarder.butler_mqtt.status_topic (its default)",
        )
        self.report.differs.append(
            "mqttConfig: Herald publishes Butler's topics with QoS 1 (Butler: 0), so a broker outage is retried; consumers may see a message twice"
        )
        for key in (
            "azureEventGrid",
            "taskStartTopic",
            "subscriptionRootTopic",
            "serviceRunningTopic",
            "serviceStoppedTopic",
            "serviceStatusTopic",
            "qlikSenseServerLicenseTopic",
            "qlikSenseServerLicenseExpireTopic",
            "qlikSenseCloud",
        ):
            if _get(mqtt, key) is not None and (
                key != "azureEventGrid" or _on(mqtt, "azureEventGrid.enable")
            ):
                self.none(
                    f"mqttConfig.{key}",
                    "not a reload alert: starting tasks, services, licences and Qlik Cloud are not part of Herald",
                )
        return section

    # --- metrics and archive ----------------------------------------------------------------

    def metrics(self) -> dict[str, Any] | None:
        influx_b = _get(self.b, "influxDb", {})
        if not _on(influx_b):
            return None
        version = int(_get(influx_b, "version", 1))
        port = _get(influx_b, "hostPort", 8086)
        influx: dict[str, Any] = {
            "enabled": True,
            "version": version,
            "url": f"http://{_get(influx_b, 'hostIP', 'localhost')}:{port}",
        }
        self.map("influxDb.hostIP/hostPort/version", "metrics_writer.influxdb.url/version")
        if version == 1:
            v1: dict[str, Any] = {"database": _get(influx_b, "v1Config.dbName", "butler")}
            if _get(influx_b, "v1Config.retentionPolicy.name"):
                v1["retention_policy"] = _get(influx_b, "v1Config.retentionPolicy.name")
            if _on(influx_b, "v1Config.auth.enable"):
                v1["username"] = _get(influx_b, "v1Config.auth.username")
                self.secret(
                    v1,
                    "password",
                    _get(influx_b, "v1Config.auth.password"),
                    "influxdb-password",
                    "influxDb.v1Config.auth.password",
                )
            influx["v1"] = v1
            self.map(
                "influxDb.v1Config.dbName/retentionPolicy.name/auth.username",
                "metrics_writer.influxdb.v1.database/retention_policy/username",
            )
            self.none(
                "influxDb.v1Config.retentionPolicy.duration",
                "Herald does not create retention policies: create it in InfluxDB",
            )
        else:
            key = "v2" if version == 2 else "v3"
            b = _get(influx_b, f"{key}Config", {})
            target: dict[str, Any] = (
                {"org": b.get("org", ""), "bucket": b.get("bucket", "")}
                if version == 2
                else {"database": b.get("database", "")}
            )
            self.secret(
                target, "token", b.get("token"), "influxdb-token", f"influxDb.{key}Config.token"
            )
            influx[key] = target
            self.map(f"influxDb.{key}Config", f"metrics_writer.influxdb.{key}")
        influx["static_tags"] = _pairs_at(influx_b, "tag.static")
        influx["measurement_tags"] = {
            k: v
            for k, v in (
                ("reload_task_failed", _pairs_at(influx_b, "reloadTaskFailure.tag.static")),
                ("reload_task_success", _pairs_at(influx_b, "reloadTaskSuccess.tag.static")),
            )
            if v
        }
        influx["use_task_tags"] = (
            _get(influx_b, "reloadTaskFailure.tag.dynamic.useTaskTags", True) is not False
        )
        influx["use_app_tags"] = (
            _get(influx_b, "reloadTaskFailure.tag.dynamic.useAppTags", True) is not False
        )
        influx["failed_tail_lines"] = int(
            _get(influx_b, "reloadTaskFailure.tailScriptLogLines", 20)
        )
        influx["success_head_lines"] = int(
            _get(influx_b, "reloadTaskSuccess.headScriptLogLines", 15)
        )
        influx["success_tail_lines"] = int(
            _get(influx_b, "reloadTaskSuccess.tailScriptLogLines", 25)
        )
        self.map(
            "influxDb.tag.static/reloadTask*.tag",
            "metrics_writer.influxdb.static_tags/measurement_tags/use_task_tags/use_app_tags",
        )
        self.report.differs.append(
            "influxDb.*.tag.dynamic: Herald writes the taskTag_/appTag_ tags it is told to (use_task_tags/use_app_tags), on every reload point"
        )
        success: dict[str, Any] = {"enabled": _on(influx_b, "reloadTaskSuccess.enable")}
        if _on(influx_b, "reloadTaskSuccess.byCustomProperty.enable"):
            success["mode"] = "by_custom_property"
            success["custom_property"] = {
                "name": _get(influx_b, "reloadTaskSuccess.byCustomProperty.customPropertyName"),
                "value": str(
                    _get(influx_b, "reloadTaskSuccess.byCustomProperty.enabledValue", "Yes")
                ),
            }
        else:
            success["mode"] = "all_reload_tasks"
        influx["success"] = success
        self.map(
            "influxDb.reloadTaskSuccess.enable/allReloadTasks/byCustomProperty",
            "metrics_writer.influxdb.success",
        )
        types = ["reload"]
        for prefix, task_type in (
            ("userSync", "user_sync"),
            ("externalProgram", "external_program"),
            ("distribute", "distribute"),
            ("preload", "preload"),
        ):
            enabled = [
                o for o in ("Success", "Failure") if _on(influx_b, f"{prefix}Task{o}.enable")
            ]
            if enabled:
                types.append(task_type)
                self.map(
                    f"influxDb.{prefix}Task*.enable",
                    f"metrics_writer.influxdb.when.task_types ({task_type})",
                )
                if len(enabled) == 1 or _get(influx_b, f"{prefix}Task{enabled[0]}.tag.static"):
                    self.report.differs.append(
                        f"influxDb.{prefix}Task*: Herald writes both outcomes of {task_type} tasks, "
                        "with the global tags (this block's own tags and single-outcome switch are not read)"
                    )
        influx["when"] = {"task_types": types}
        return {"influxdb": influx}

    def archive(self) -> dict[str, Any] | None:
        store = _get(self.b, "scriptLog.storeOnDisk.clientManaged.reloadTaskFailure", {})
        if _get(self.b, "scriptLog.storeOnDisk.qsCloud") is not None and _on(
            self.b, "scriptLog.storeOnDisk.qsCloud.appReloadFailure.enable"
        ):
            self.none("scriptLog.storeOnDisk.qsCloud", "Qlik Cloud is not part of Herald")
        if not _on(store):
            return None
        self.map(
            "scriptLog.storeOnDisk.clientManaged.reloadTaskFailure.logDirectory",
            "log_archiver.directory",
        )
        self.report.differs.append(
            "log_archiver.retention_days: Herald's default (90) removes day folders older than 90 "
            "days, Butler's old ones included; the import writes 0 (keep all)"
        )
        return {
            "directory": _get(store, "logDirectory", "var/script-logs"),
            "retention_days": 0,
            "when": {"task_types": ["reload"]},
        }

    def skipped(self) -> None:
        for key in (
            "heartbeat",
            "uptimeMonitor",
            "dockerHealthCheck",
            "configVisualisation",
            "restServerConfig",
            "scheduler",
            "keyValueStore",
            "serviceMonitor",
            "qlikSenseCloud",
            "qlikSenseLicense",
            "qlikSenseVersion",
            "startTaskFilter",
            "configEngine",
            "fileCopyApprovedDirectories",
            "fileMoveApprovedDirectories",
            "fileDeleteApprovedDirectories",
        ):
            if _get(self.b, key) is not None:
                self.none(key, f"not a reload alert; Herald has no counterpart ({_BUTLER_DOCS})")
        self.report.differs.append(
            "Task types: the import limits every destination to reload tasks (when: task_types: "
            "[reload]) as Butler; Herald can alert on external-program, user-sync, distribute and preload tasks too"
        )


def _line_counts(node: Any, key: str) -> list[int]:
    """Every ``key`` (headScriptLogLines, tailScriptLogLines) anywhere in Butler's tree."""
    if isinstance(node, dict):
        own = [int(node[key])] if isinstance(node.get(key), int) else []
        return own + [n for value in node.values() for n in _line_counts(value, key)]
    if isinstance(node, list):
        return [n for item in node for n in _line_counts(item, key)]
    return []


def _owners(owner: Any, path: str) -> list[dict[str, str]]:
    """Butler's [{directory, userId}], without the template's <placeholder> entries."""
    return [
        {"directory": str(user.get("directory")), "user_id": str(user.get("userId"))}
        for user in _get(owner, path, []) or []
        if isinstance(user, dict)
        and user.get("directory")
        and "<" not in str(user.get("directory"))
    ]


def _pairs_at(node: Any, path: str) -> dict[str, str]:
    """Butler's [{name, value}] lists (static tags and attributes) as a mapping."""
    return {
        str(t["name"]): str(t["value"]) for t in _get(node, path, []) or [] if isinstance(t, dict)
    }


def _subject(text: str) -> str:
    # Imported here: the field list is computed from the sample events, needed only for a subject.
    from herald_butler_import.fields import ROOTS
    from herald_butler_import.handlebars import to_jinja

    return to_jinja(text, ROOTS, html=False)


def convert(butler_document: Any, out: Path) -> Import:
    """The Herald document for a loaded Butler YAML document; ``out`` is where it will live."""
    butler = _get(butler_document, "Butler")
    if not isinstance(butler, dict):
        raise ValueError("the file has no Butler: section (is it Butler's production.yaml?)")
    out = out.resolve()
    converter = _Converter(butler, out / "secrets")
    document: dict[str, Any] = {"qlik": converter.qlik()}
    sections = (
        ("ingest", converter.ingest()),
        ("emailer", converter.emailer(out / "templates" / "email")),
        ("chat_notifier", converter.chat(out / "templates")),
        ("incident_forwarder", converter.incidents()),
        ("metrics_writer", converter.metrics()),
        ("log_archiver", converter.archive()),
    )
    document.update({name: section for name, section in sections if section is not None})
    converter.skipped()
    return Import(document, converter.report, converter.secrets, converter.templates)
