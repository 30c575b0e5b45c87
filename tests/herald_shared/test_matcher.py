"""``when:``: which events a destination takes, as an operator writes it in herald.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from herald_log_archiver.settings import LogArchiverSettings
from herald_shared import config, samples
from herald_shared.config import ConfigError
from herald_shared.events import Event, TaskFailed
from herald_shared.matcher import MATCH_ALL, When


def when(text: str) -> When:
    """A matcher from its YAML, as written under ``when:``."""
    return When.model_validate(yaml.safe_load(text))


def with_task(event: TaskFailed, **changes: Any) -> TaskFailed:
    return msgspec.structs.replace(event, task=msgspec.structs.replace(event.task, **changes))


def with_app(event: TaskFailed, **changes: Any) -> TaskFailed:
    assert event.app is not None
    return msgspec.structs.replace(event, app=msgspec.structs.replace(event.app, **changes))


def gated(value: list[str]) -> TaskFailed:
    """The sample failure with Butler's email gate set on its task."""
    failed = samples.sample_failed()
    properties = {**failed.task.custom_properties, "Butler_FailedAlertEnableEmail": value}
    return with_task(failed, custom_properties=properties)


@pytest.mark.parametrize("event", samples.sample_events(), ids=lambda e: e.kind)
def test_no_criteria_match_every_event(event: Event) -> None:
    assert MATCH_ALL.matches(event)
    assert when("{}").matches(event)


def test_kinds() -> None:
    failures_only = when("kinds: [task_failed]")
    assert failures_only.matches(samples.sample_failed())
    assert failures_only.matches(samples.sample_partial())
    assert not failures_only.matches(samples.sample_aborted())
    assert not failures_only.matches(samples.sample_succeeded())
    either = when("kinds: [task_failed, task_aborted]")
    assert either.matches(samples.sample_aborted())
    assert not either.matches(samples.sample_succeeded(recovers=samples.sample_failed()))


def test_task_types() -> None:
    failed = samples.sample_failed()
    user_sync = with_task(failed, type="user_sync")
    reloads = when("task_types: [reload]")
    assert reloads.matches(failed)
    assert not reloads.matches(user_sync)
    assert when("task_types: [external_program, user_sync]").matches(user_sync)


@pytest.mark.parametrize(
    ("patterns", "matched"),
    [
        (["Manually triggered reload of Test failing reloads 2"], True),
        (["MANUALLY TRIGGERED RELOAD OF *"], True),  # case-insensitive
        (["*failing reloads ?"], True),
        (["*reloads [0-9]"], True),
        (["Reload Sales*", "*Failing*"], True),  # any pattern will do
        (["Test failing reloads 2"], False),  # a pattern matches the whole name
        (["Reload Sales*"], False),
    ],
)
def test_task_name_patterns(patterns: list[str], matched: bool) -> None:
    assert When(task_names=patterns).matches(samples.sample_failed()) is matched


def test_app_name_patterns() -> None:
    failed = samples.sample_failed()
    assert when("app_names: ['test FAILING*']").matches(failed)
    assert not when("app_names: ['Sales*']").matches(failed)
    assert when("app_names: ['Sales*']").matches(samples.sample_partial())
    # A task without an app (a user sync, say) never matches an app criterion.
    no_app = msgspec.structs.replace(failed, app=None)
    assert not when("app_names: ['*']").matches(no_app)
    assert when("task_names: ['*']").matches(no_app)


def test_streams() -> None:
    failed = samples.sample_failed()  # published to the Finance stream
    assert when("streams: [finance]").matches(failed)
    assert when("streams: ['Fin*', Sales]").matches(failed)
    assert not when("streams: [Sales]").matches(failed)
    # An unpublished app has no stream, so no stream pattern (not even *) matches it.
    assert not when("streams: ['*']").matches(samples.sample_partial())
    assert not when("streams: ['*']").matches(with_app(failed, stream=None))


def test_task_tags_are_compared_exactly_and_any_listed_tag_will_do() -> None:
    failed = samples.sample_failed()  # tagged Finance, Daily
    assert when("task_tags: [Daily]").matches(failed)
    assert when("task_tags: [Weekly, Finance]").matches(failed)
    assert not when("task_tags: [daily]").matches(failed)
    assert not when("task_tags: [Weekly]").matches(failed)
    assert not when("task_tags: [Daily]").matches(samples.sample_partial())  # no tags at all


def test_app_tags() -> None:
    failed = samples.sample_failed()  # the app is tagged Sales
    assert when("app_tags: [Sales]").matches(failed)
    assert not when("app_tags: [Finance]").matches(failed)  # that is the task's tag
    assert not when("app_tags: [Sales]").matches(samples.sample_partial())


def test_butlers_enable_by_custom_property_gate() -> None:
    gate = when("task_custom_properties: {Butler_FailedAlertEnableEmail: ['Yes']}")
    assert gate.matches(gated(["Yes"]))
    assert not gate.matches(gated(["No"]))
    assert not gate.matches(gated(["yes"]))  # values are compared exactly, as Qlik stores them
    assert not gate.matches(samples.sample_failed())  # the property is not set on the task


def test_task_custom_properties_are_multi_valued_and_all_listed_must_hold() -> None:
    failed = with_task(
        samples.sample_failed(),
        custom_properties={"Herald_Team": ["finance", "sales"], "Priority": ["High"]},
    )
    assert when("task_custom_properties: {Herald_Team: [sales]}").matches(failed)
    assert when("task_custom_properties: {Herald_Team: [hr, finance]}").matches(failed)
    both = "task_custom_properties: {Herald_Team: [sales], Priority: [High]}"
    assert when(both).matches(failed)
    wrong_priority = "task_custom_properties: {Herald_Team: [sales], Priority: [Low]}"
    assert not when(wrong_priority).matches(failed)


def test_app_custom_properties() -> None:
    failed = samples.sample_failed()  # the app has Department: Finance
    assert when("app_custom_properties: {Department: [Sales, Finance]}").matches(failed)
    assert not when("app_custom_properties: {Department: [Sales]}").matches(failed)
    # The task's properties are not the app's.
    assert not when("app_custom_properties: {Herald_Team: [finance]}").matches(failed)
    no_app = msgspec.structs.replace(failed, app=None)
    assert not when("app_custom_properties: {Department: [Finance]}").matches(no_app)


def test_every_criterion_given_must_hold() -> None:
    failed = samples.sample_failed()
    everything = when(
        """
        kinds: [task_failed]
        task_types: [reload]
        task_names: ['*reloads*']
        app_names: ['Test*']
        streams: [Finance]
        task_tags: [Daily]
        app_tags: [Sales]
        task_custom_properties: {Herald_Team: [finance]}
        app_custom_properties: {Department: [Finance]}
        """
    )
    assert everything.matches(failed)
    assert not everything.matches(with_task(failed, tags=["Weekly"]))
    assert not everything.matches(with_app(failed, tags=[]))
    assert not everything.matches(samples.sample_aborted())


def test_unless_excludes_what_it_matches() -> None:
    rule = when("kinds: [task_failed]\nunless: {task_names: ['*test*']}")
    assert not rule.matches(samples.sample_failed())  # "…of Test failing reloads 2"
    assert rule.matches(samples.sample_partial())  # "Reload Sales dashboard"
    assert not rule.matches(samples.sample_aborted())  # unless cannot widen the rule
    # unless: inside unless: puts back part of what was excluded.
    nested = when(
        "unless: {task_names: ['*test*'], unless: {task_custom_properties: "
        "{Butler_FailedAlertEnableEmail: ['Yes']}}}"
    )
    assert not nested.matches(samples.sample_failed())
    assert nested.matches(gated(["Yes"]))
    assert nested.matches(samples.sample_partial())


def _load_archiver(tmp_path: Path, text: str) -> LogArchiverSettings:
    path = tmp_path / "herald.yaml"
    path.write_text(text, encoding="utf-8")
    return config.load(path, {}).section("log_archiver", LogArchiverSettings)


def test_a_when_block_in_herald_yaml_gates_the_destination(tmp_path: Path) -> None:
    settings = _load_archiver(
        tmp_path,
        "log_archiver:\n"
        "  when:\n"
        "    kinds: [task_failed]\n"
        "    task_custom_properties:\n"
        '      Butler_FailedAlertEnableEmail: ["Yes"]\n',
    )
    assert settings.when.matches(gated(["Yes"]))
    assert not settings.when.matches(samples.sample_failed())


@pytest.mark.parametrize(
    ("when_block", "key", "message"),
    [
        ("{task_name: ['*']}", "log_archiver.when.task_name", "Extra inputs are not permitted"),
        ("{unless: {colour: red}}", "log_archiver.when.unless.colour", "Extra inputs"),
        ("{kinds: [task_exploded]}", "log_archiver.when.kinds[0]", "Input should be"),
        ("{task_types: reload}", "log_archiver.when.task_types", "Input should be a valid list"),
        (
            "{task_custom_properties: {Butler_FailedAlertEnableEmail: Yes}}",
            "log_archiver.when.task_custom_properties.Butler_FailedAlertEnableEmail",
            "Input should be a valid list",
        ),
    ],
)
def test_a_bad_matcher_is_a_config_error_naming_the_key(
    tmp_path: Path, when_block: str, key: str, message: str
) -> None:
    path = tmp_path / "herald.yaml"
    with pytest.raises(ConfigError) as caught:
        _load_archiver(tmp_path, f"log_archiver:\n  when: {when_block}\n")
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{path}: {key}: ")
    assert message in caught.value.problems[0]


def test_a_matcher_needs_no_app_to_judge_task_criteria() -> None:
    # A task without an app still matches criteria about the task alone.
    failed = samples.sample_failed()
    no_app = msgspec.structs.replace(failed, app=None)
    assert when("kinds: [task_failed]\ntask_tags: [Finance]").matches(no_app)
