"""An external program that failed is announced as one, not as a failed reload: the default
e-mail subject and body, the chat title and the Signl4 title say the task's type. Reload tasks
keep Butler's words."""

from __future__ import annotations

import pytest

from herald_butler_import.fields import _TARGET
from herald_chat_notifier import context as chat_context
from herald_emailer.rendering import Renderer
from herald_emailer.settings import EmailerSettings
from herald_incident_forwarder.destinations.signl4 import Signl4Destination, Signl4Settings
from herald_shared.events import TaskFailed
from herald_shared.samples import sample_failed


def failed(task_type: str) -> TaskFailed:
    event = sample_failed()
    event.task.type = task_type  # type: ignore[assignment]
    return event


@pytest.mark.parametrize(
    ("task_type", "words", "signl4"),
    [
        ("reload", "reload", "Qlik Sense reload task failed"),  # Butler's titles
        ("external_program", "external program", "Qlik Sense external program task failed"),
        ("user_sync", "user sync", "Qlik Sense user sync task failed"),
    ],
)
def test_the_alerts_name_the_task_type(task_type: str, words: str, signl4: str) -> None:
    event = failed(task_type)
    mail = Renderer(EmailerSettings().outcome("failed"), None).render(event)
    assert mail.subject == f'Qlik Sense {words} failed: "{event.task.name}"'
    assert mail.html is not None
    assert f"The {words} task <strong>" in mail.html
    assert f"The {words} task " in mail.text
    chat = chat_context.build(event, "failed", _TARGET)
    assert chat["title"] == (
        "Qlik Sense reload failed" if words == "reload" else f"Qlik Sense {words} task failed"
    )
    destination = Signl4Destination(
        Signl4Settings.model_validate(
            {"enabled": True, "url": "https://connect.signl4.com/webhook/x"}
        )
    )
    assert destination.payload(event)["Title"] == signl4
