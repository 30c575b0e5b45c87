"""QRS JSON: the site's records as the Repository Service returns them (camelCase, ISO UTC dates).

Condensed forms (``task``) carry little; full forms (``task/full``, ``reloadtask/{id}``,
``app/full``, ``app/{id}``, ``user/{id}``) carry what docs/butler-compatibility.md §2.2 lists, plus the usual
bookkeeping fields (``createdDate``, ``privileges``, ``schemaPath``) a real QRS adds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeAlias

from herald_qlik_sim.model import (
    NEVER,
    ZERO_GUID,
    App,
    CustomPropertyDefinition,
    CustomPropertyValue,
    Execution,
    Site,
    Status,
    Stream,
    Tag,
    Task,
    TaskType,
    User,
    derived_id,
)

Json: TypeAlias = dict[str, Any]

_SCHEMA_PATH = {
    TaskType.RELOAD: "ReloadTask",
    TaskType.EXTERNAL_PROGRAM: "ExternalProgramTask",
    TaskType.USER_SYNC: "UserSyncTask",
    TaskType.DISTRIBUTE: "DistributionTask",
    TaskType.PRELOAD: "PreloadTask",
}
PRODUCT_VERSION = "14.187.4"


def qrs_time(moment: datetime) -> str:
    """``2024-06-10T00:00:03.118Z``: how the QRS writes every date (UTC, milliseconds)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def tag(item: Tag) -> Json:
    return {"id": item.id, "name": item.name, "privileges": None}


def custom_property_definition(definition: CustomPropertyDefinition) -> Json:
    """One item of ``/qrs/custompropertydefinition``: the condensed definition a value embeds,
    plus the object types it applies to."""
    return _condensed_definition(definition) | {"objectTypes": list(definition.object_types)}


def _condensed_definition(definition: CustomPropertyDefinition) -> Json:
    return {
        "id": definition.id,
        "name": definition.name,
        "valueType": "Text",
        "choiceValues": list(definition.choice_values),
        "privileges": None,
    }


def custom_property(item: CustomPropertyValue, modified: datetime, by: str) -> Json:
    definition = item.definition
    return {
        "id": item.id,
        "createdDate": qrs_time(modified),
        "modifiedDate": qrs_time(modified),
        "modifiedByUserName": by,
        "value": item.value,
        "definition": _condensed_definition(definition),
        "schemaPath": "CustomPropertyValue",
    }


def stream(item: Stream | None) -> Json | None:
    return None if item is None else {"id": item.id, "name": item.name, "privileges": None}


def owner(user: User) -> Json:
    return {
        "id": user.id,
        "userId": user.user_id,
        "userDirectory": user.user_directory,
        "userDirectoryConnectorName": user.user_directory,
        "name": user.name,
        "privileges": None,
    }


def user(item: User) -> Json:
    """``user/{id}``: e-mail addresses are ``attributes`` of type ``email``."""
    attributes = [
        {
            "id": derived_id(item.id, "attribute", str(index)),
            "attributeType": "email",
            "attributeValue": address,
            "externalId": derived_id(item.id, "external", str(index)),
        }
        for index, address in enumerate(item.emails)
    ]
    attributes.append(
        {
            "id": derived_id(item.id, "attribute", "title"),
            "attributeType": "title",
            "attributeValue": "Analyst" if item.emails else "Service account",
            "externalId": derived_id(item.id, "external", "title"),
        }
    )
    return {
        **owner(item),
        "createdDate": "2021-01-04T08:00:00.000Z",
        "modifiedDate": "2024-06-01T06:00:00.000Z",
        "modifiedByUserName": "INTERNAL\\sa_repository",
        "customProperties": [],
        "roles": [],
        "attributes": attributes,
        "inactive": False,
        "removedExternally": False,
        "blacklisted": False,
        "deleteProhibited": False,
        "tags": [],
        "schemaPath": "User",
    }


def app_reference(item: App) -> Json:
    """The app as a task embeds it."""
    return {
        "id": item.id,
        "name": item.name,
        "appId": "",
        "publishTime": qrs_time(item.publish_time),
        "published": item.published,
        "stream": stream(item.stream),
        "savedInProductVersion": PRODUCT_VERSION,
        "migrationHash": "9a3f1e2d5c4b6a7980f1e2d3c4b5a69788f9e0d1",
        "availabilityStatus": 0,
        "privileges": None,
    }


def app_full(item: App, site: Site) -> Json:
    """``app/full`` and ``app/{id}``: everything, the owner included."""
    app_owner = site.users[item.owner_id]
    return {
        **app_reference(item),
        "createdDate": qrs_time(item.created),
        "modifiedDate": qrs_time(item.modified),
        "modifiedByUserName": item.modified_by,
        "customProperties": [
            custom_property(value, item.modified, item.modified_by)
            for value in item.custom_properties
        ],
        "owner": owner(app_owner),
        "description": item.description,
        "fileSize": item.file_size,
        "lastReloadTime": qrs_time(item.last_reload),
        "thumbnail": "",
        "dynamicColor": "",
        "tags": [tag(value) for value in item.tags],
        "schemaPath": "App",
    }


def execution_result(
    execution: Execution | None, task: Task, *, hide_file_reference: bool = False
) -> Json:
    """``operational.lastExecutionResult``; a task that never ran gets the 1753 placeholder."""
    if execution is None:
        return {
            "id": derived_id(task.id, "never-ran"),
            "executingNodeName": "",
            "status": int(Status.NEVER_STARTED),
            "startTime": qrs_time(NEVER),
            "stopTime": qrs_time(NEVER),
            "duration": 0,
            "fileReferenceID": ZERO_GUID,
            "scriptLogAvailable": False,
            "details": [],
            "scriptLogLocation": "",
            "scriptLogSize": 0,
            "privileges": None,
        }
    has_log = bool(execution.script_log) and not hide_file_reference
    return {
        "id": execution.id,
        "executionID": execution.execution_id,
        "taskID": execution.task_id,
        "appID": execution.app_id or ZERO_GUID,
        "executingNodeName": execution.node,
        "status": int(execution.status),
        "startTime": qrs_time(execution.start),
        "stopTime": qrs_time(execution.stop),
        "duration": execution.duration_ms,
        "fileReferenceID": execution.file_reference_id if not hide_file_reference else ZERO_GUID,
        "scriptLogAvailable": has_log,
        "details": [
            {
                "id": detail.id,
                "detailsType": detail.details_type,
                "message": detail.message,
                "detailCreatedDate": qrs_time(detail.created),
                "privileges": None,
            }
            for detail in execution.details
        ],
        "scriptLogLocation": f"{execution.node}\\Script\\{execution.id}.log" if has_log else "",
        "scriptLogSize": execution.script_log_size if has_log else 0,
        "privileges": None,
    }


def execution_result_full(execution: Execution, task: Task, *, hide_file_reference: bool) -> Json:
    """``executionresult/full``: the result with the bookkeeping fields of a QRS entity."""
    return {
        **execution_result(execution, task, hide_file_reference=hide_file_reference),
        "createdDate": qrs_time(execution.start),
        "modifiedDate": qrs_time(execution.stop),
        "modifiedByUserName": "INTERNAL\\sa_scheduler",
        "schemaPath": "ExecutionResult",
    }


def execution_result_condensed(execution: Execution) -> Json:
    """``executionresult``: the condensed form, as for other entities without a name."""
    return {"id": execution.id, "privileges": None}


def operational(task: Task, *, hide_file_reference: bool = False) -> Json:
    return {
        "id": task.operational_id,
        "lastExecutionResult": execution_result(
            task.last_execution, task, hide_file_reference=hide_file_reference
        ),
        "nextExecution": qrs_time(task.next_execution),
        "privileges": None,
    }


def task_condensed(task: Task) -> Json:
    """``task``: the condensed form."""
    return {
        "id": task.id,
        "name": task.name,
        "taskType": int(task.task_type),
        "enabled": task.enabled,
        "privileges": None,
    }


def task_full(task: Task, site: Site, *, hide_file_reference: bool = False) -> Json:
    """``task/full`` and ``reloadtask/{id}``: the task with its app, tags, custom properties and
    last execution result."""
    document: Json = {
        "id": task.id,
        "createdDate": qrs_time(task.created),
        "modifiedDate": qrs_time(task.modified),
        "modifiedByUserName": task.modified_by,
        "customProperties": [
            custom_property(value, task.modified, task.modified_by)
            for value in task.custom_properties
        ],
        "operational": operational(task, hide_file_reference=hide_file_reference),
        "name": task.name,
        "taskType": int(task.task_type),
        "enabled": task.enabled,
        "taskSessionTimeout": task.session_timeout,
        "maxRetries": task.max_retries,
        "isManuallyTriggered": task.is_manually_triggered,
        "isPartialReload": task.is_partial_reload,
        "tags": [tag(value) for value in task.tags],
        "privileges": None,
        "schemaPath": _SCHEMA_PATH[task.task_type],
    }
    if task.task_type == TaskType.RELOAD:
        app = site.app_of(task)
        document.update(
            app=None if app is None else app_reference(app), timeToLive=0, preloadNodes=[]
        )
    else:
        document["app"] = None
    if task.task_type == TaskType.EXTERNAL_PROGRAM:
        document.update(path=task.path, parameters=task.parameters)
    return document


def garbled(document: Json) -> Json:
    """A task document with fields of the wrong JSON type (the ``garbled_tasks`` fault)."""
    return {**document, "tags": 7, "maxRetries": "three"}


def about() -> Json:
    return {
        "schemaPath": "About",
        "buildVersion": "34.56.2.0",
        "buildDate": "5/1/2025 12:00:00 AM",
        "databaseProvider": "Devart.Data.PostgreSql",
        "nodeType": 1,
        "sharedPersistence": True,
        "requiresBootstrap": False,
        "singleNodeOnly": False,
    }
