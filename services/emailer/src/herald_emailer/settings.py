"""``emailer:`` in herald.yaml: the SMTP server and one block per outcome.

The outcomes are ``failed``, ``aborted``, ``succeeded`` and ``recovered`` (a success that ends an
earlier failure or abort). A success that recovers goes to ``recovered`` only, unless
``recovered`` is disabled; then it is an ordinary success. The keys are the e-mail destination's
(:mod:`herald_emailer.destinations.email`); the section adds the delivery settings.
"""

from __future__ import annotations

from herald_emailer.destinations.email import EmailSettings
from herald_shared.settings import DeliverySettings, ServiceSection


class EmailerSettings(ServiceSection, EmailSettings):
    delivery: DeliverySettings = DeliverySettings()
