"""``emailer:`` in herald.yaml: the SMTP server and one block per outcome.

The outcomes are ``failed``, ``aborted``, ``succeeded`` and ``recovered`` (a success that ends an
earlier failure or abort). A success that recovers goes to ``recovered`` only, unless
``recovered`` is disabled; then it is an ordinary success.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from herald_shared.config import Duration, Section
from herald_shared.matcher import MATCH_ALL, When
from herald_shared.settings import DeliverySettings, ServiceSection

Outcome = Literal["failed", "aborted", "succeeded", "recovered"]
OUTCOMES: tuple[Outcome, ...] = ("failed", "aborted", "succeeded", "recovered")

_DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}


class SmtpSettings(Section):
    host: str = "localhost"
    port: int | None = Field(default=None, ge=1, le=65535)  # None: 25, 587 or 465 per `tls`
    # none: plain text; starttls: upgrade after connecting (required); tls: TLS from the start.
    tls: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None  # AUTH only when set
    password: SecretStr | None = None
    ca_file: Path | None = None  # None: the system's trust store
    verify: bool = True  # certificate and host name verification
    timeout: Duration = 30.0  # per SMTP command, connecting included
    # Messages sent in parallel, each over a connection of its own (kept open and reused).
    connections: int = Field(default=4, ge=1, le=32)

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.tls]

    @model_validator(mode="after")
    def _password_needs_username(self) -> SmtpSettings:
        if self.password is not None and not self.username:
            raise ValueError("password is set but username is not")
        return self


class OwnerRef(Section):
    """A Qlik user, as the QMC shows it: user directory and user id (exact, case-sensitive)."""

    directory: str
    user_id: str


class AppOwnerSettings(Section):
    enable: bool = True  # off by default for `succeeded` only, as in Butler
    include_all: bool = True  # every owner; otherwise only those in `include`
    include: list[OwnerRef] = Field(default_factory=list)
    exclude: list[OwnerRef] = Field(default_factory=list)  # applied after `include`


class OutcomeSettings(Section):
    """What every outcome block has; the subclasses below only change the defaults."""

    enable: bool = True
    subject: str  # a Jinja2 template over the fields listed in herald_emailer.context
    html_template: str  # file names, looked up in emailer.template_dir, then the built-in ones
    text_template: str
    priority: Literal["high", "normal", "low"] = "normal"
    from_address: str | None = None  # None: emailer.from_address
    recipients: list[str] = Field(
        default_factory=list
    )  # get every alert of this outcome (subject to recipients_when)
    # Butler's enable-by-custom-property gate on `recipients` only, e.g.
    # {task_custom_properties: {Butler_FailedAlertEnableEmail: [Yes]}}.
    recipients_when: When = MATCH_ALL
    # Every value of this task custom property is a recipient; null: none.
    recipients_custom_property: str | None = None
    app_owner: AppOwnerSettings = AppOwnerSettings()
    when: When = MATCH_ALL  # gates the whole outcome, every recipient
    rate_limit: Duration | None = None  # seconds per task and recipient; null: no limit


class FailedSettings(OutcomeSettings):
    subject: str = 'Qlik Sense reload failed: "{{ task_name }}"'
    html_template: str = "failed.html"
    text_template: str = "failed.txt"
    priority: Literal["high", "normal", "low"] = "high"
    recipients_custom_property: str | None = "Butler_FailedAlertSendToEmail"
    app_owner: AppOwnerSettings = AppOwnerSettings()
    rate_limit: Duration | None = 600.0


class AbortedSettings(OutcomeSettings):
    subject: str = 'Qlik Sense reload aborted: "{{ task_name }}"'
    html_template: str = "aborted.html"
    text_template: str = "aborted.txt"
    priority: Literal["high", "normal", "low"] = "high"
    recipients_custom_property: str | None = "Butler_AbortedAlertSendToEmail"
    app_owner: AppOwnerSettings = AppOwnerSettings()
    rate_limit: Duration | None = 600.0


class SucceededSettings(OutcomeSettings):
    enable: bool = False  # a mail per successful reload is opt-in, as in Butler
    subject: str = '✅ Qlik Sense reload success: "{{ task_name }}"'
    html_template: str = "succeeded.html"
    text_template: str = "succeeded.txt"
    recipients_custom_property: str | None = "Butler_SuccessAlertSendToEmail"
    app_owner: AppOwnerSettings = AppOwnerSettings(enable=False)
    rate_limit: Duration | None = 60.0


class RecoveredSettings(OutcomeSettings):
    # Whoever was told about the failure hears that it is over: the failure's custom property
    # and the owner. At most one recovery per 10 minutes per task and recipient, like failures.
    subject: str = '✅ Qlik Sense reload recovered: "{{ task_name }}"'
    html_template: str = "recovered.html"
    text_template: str = "recovered.txt"
    recipients_custom_property: str | None = "Butler_FailedAlertSendToEmail"
    app_owner: AppOwnerSettings = AppOwnerSettings()
    rate_limit: Duration | None = 600.0


class EmailerSettings(ServiceSection):
    smtp: SmtpSettings = SmtpSettings()
    from_address: str = "Qlik Sense alerts <herald@localhost>"
    failed: FailedSettings = FailedSettings()
    aborted: AbortedSettings = AbortedSettings()
    succeeded: SucceededSettings = SucceededSettings()
    recovered: RecoveredSettings = RecoveredSettings()
    template_dir: Path | None = None  # templates here take precedence over the built-in ones
    delivery: DeliverySettings = DeliverySettings()

    def outcome(self, name: Outcome) -> OutcomeSettings:
        settings: OutcomeSettings = getattr(self, name)
        return settings
