"""The demo site's fixed content: every GUID is a literal, so tests and demos can name it.

Tasks (``default_site()`` builds them, each with one finished execution unless noted):

=============================  ====================================  ==========  ============
constant                       name                                  type        last outcome
=============================  ====================================  ==========  ============
``TASK_FAILED_ID``             Reload Sales dashboard                reload      FinishedFail
``TASK_ABORTED_ID``            Reload Inventory snapshot             reload      Aborted
``TASK_SUCCEEDED_ID``          Reload Customer 360                   reload      FinishedSuccess
``TASK_NO_OWNER_EMAIL_ID``     Reload HR headcount                   reload      FinishedFail
``TASK_EXTERNAL_ID``           Export data lake snapshot             external    FinishedFail
``TASK_DISTRIBUTE_ID``         Distribute Sales to cloud             distribute  FinishedSuccess
``TASK_SEMICOLON_ID``          Reload Budget; FY2025 forecast        reload      FinishedSuccess
``TASK_NEVER_RUN_ID``          Reload Customer 360 (weekly full)     reload      never ran
=============================  ====================================  ==========  ============

The HR app is unpublished (no stream, publish time 1753-01-01) and its owner has no e-mail;
the Sales app's owner has two. The never-run task's last execution result carries the QRS
1753-01-01 placeholder dates; the aborted task (manually triggered) has no next execution.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from herald_qlik_sim.executions import new_execution
from herald_qlik_sim.model import (
    NEVER,
    App,
    CustomPropertyDefinition,
    CustomPropertyValue,
    Outcome,
    Site,
    Stream,
    Tag,
    Task,
    TaskType,
    User,
    derived_id,
)

# --- tasks -------------------------------------------------------------------------------------
TASK_FAILED_ID: Final = "430b3e27-2f02-4698-891d-1b47f5fb97d4"
TASK_ABORTED_ID: Final = "4bf0cc68-7c50-40bd-b445-4961d0af1182"
TASK_SUCCEEDED_ID: Final = "a7fe3cdd-a529-4ac0-ac9b-76b7e05e5b4c"
TASK_NO_OWNER_EMAIL_ID: Final = "6ae58cd2-524b-4b86-86fe-debf312dc2cb"
TASK_EXTERNAL_ID: Final = "c801da4b-6081-4543-8853-cfc36d3a598d"
TASK_DISTRIBUTE_ID: Final = "972a118d-c046-4fd7-89b6-b098f57f08ca"
TASK_SEMICOLON_ID: Final = "0c404fb4-4a83-41e3-82f2-29a8db707f36"
TASK_NEVER_RUN_ID: Final = "8239cded-50ef-4439-aebd-962787e9f296"

TASK_FAILED_NAME: Final = "Reload Sales dashboard"
TASK_ABORTED_NAME: Final = "Reload Inventory snapshot"
TASK_SUCCEEDED_NAME: Final = "Reload Customer 360"
TASK_NO_OWNER_EMAIL_NAME: Final = "Reload HR headcount"
TASK_EXTERNAL_NAME: Final = "Export data lake snapshot"
TASK_DISTRIBUTE_NAME: Final = "Distribute Sales to cloud"
TASK_SEMICOLON_NAME: Final = "Reload Budget; FY2025 forecast"
TASK_NEVER_RUN_NAME: Final = "Reload Customer 360 (weekly full)"

# The task `emit` reports on when no --task is given.
TASK_FOR_OUTCOME: Final[dict[Outcome, str]] = {
    "failed": TASK_FAILED_ID,
    "aborted": TASK_ABORTED_ID,
    "succeeded": TASK_SUCCEEDED_ID,
}

# --- the last executions of the three outcome tasks ---------------------------------------------
FAILED_RESULT_ID: Final = "48269645-cc8c-4291-9733-635c2e9716a0"
FAILED_EXECUTION_ID: Final = "5a1d6778-717b-4b7a-8273-c773a5128c8d"
FAILED_FILE_REFERENCE_ID: Final = "197eecc7-9cc5-494b-ae93-d5fe6e171fd2"
ABORTED_RESULT_ID: Final = "f10f8852-6044-43e3-8277-cde38bbf256d"
ABORTED_EXECUTION_ID: Final = "515040a8-4acb-4429-9e10-93a3503194dd"
ABORTED_FILE_REFERENCE_ID: Final = "4e5f3726-961c-44c3-997d-1c0981dad975"
SUCCEEDED_RESULT_ID: Final = "07bb3916-2c47-411c-ac40-1e058e6d022c"
SUCCEEDED_EXECUTION_ID: Final = "058919c4-c974-4c8c-a0d2-e05799afb859"
SUCCEEDED_FILE_REFERENCE_ID: Final = "e1879f5e-6cb7-4cdf-b954-0a403cce930c"

# --- apps, owners, streams ---------------------------------------------------------------------
APP_SALES_ID: Final = "84d2c20e-7ef8-4a06-a238-b18e442b4f1b"
APP_INVENTORY_ID: Final = "e0662d89-504d-44fa-bb47-2ba432c43252"
APP_CUSTOMERS_ID: Final = "848c8a21-cfa9-47ca-9d8f-7cf2bef7652d"
APP_HR_ID: Final = "15f87b90-585e-4bcd-b8b1-809173cfced3"
APP_BUDGET_ID: Final = "39119e06-ed87-4cb8-a38d-193ff73de5c9"

USER_ANNA_ID: Final = "f729860e-aaba-4f13-be9a-0b924a2697a4"  # two e-mail addresses
USER_GORAN_ID: Final = "a54ebfe9-cd02-4073-bd02-6375874ed71b"  # one e-mail address
USER_NO_EMAIL_ID: Final = "1f85f9fe-b4bc-455e-a44b-ba5478933bd0"  # no e-mail attribute

STREAM_FINANCE_ID: Final = "dc420733-9a3e-46b8-9c7e-8a71c74e9945"
STREAM_OPERATIONS_ID: Final = "6c44c796-77db-4e1e-9078-b97f2fe82dab"
STREAM_SALES_ID: Final = "74118f86-f76a-432d-9b69-f1841057b071"

NODE: Final = "sense-node-1"

# --- custom properties (Butler's names) --------------------------------------------------------
CP_FAILED_SEND_TO_EMAIL: Final = "Butler_FailedAlertSendToEmail"
CP_FAILED_ENABLE_EMAIL: Final = "Butler_FailedAlertEnableEmail"
CP_SUCCESS_ENABLE_EMAIL: Final = "Butler_SuccessAlertEnableEmail"
CP_SUCCESS_INFLUXDB: Final = "Butler_SuccessReloadTask_InfluxDB"
CP_FAILED_NEW_RELIC_ACCOUNT: Final = "Butler_FailedTask_Event_NewRelicAccount"
CP_DEPARTMENT: Final = "Department"

_SITE_TZ = timezone(timedelta(hours=2))  # the Sense nodes' local time (CEST)


def _utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _local(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=_SITE_TZ)


def _definitions() -> dict[str, CustomPropertyDefinition]:
    def define(
        name: str, id_: str, choices: list[str], types: list[str]
    ) -> CustomPropertyDefinition:
        return CustomPropertyDefinition(
            id=id_, name=name, choice_values=choices, object_types=types
        )

    task_types = ["ReloadTask", "ExternalProgramTask"]
    return {
        definition.name: definition
        for definition in [
            define(
                CP_FAILED_SEND_TO_EMAIL,
                "9609fb9a-e5de-4330-bf6d-1555c843da8f",
                ["finance-bi@example.com", "ops-oncall@example.com", "hr-analytics@example.com"],
                task_types,
            ),
            define(
                CP_FAILED_ENABLE_EMAIL,
                "9390a525-06a8-4531-8410-f06b677089bc",
                ["Yes", "No"],
                task_types,
            ),
            define(
                CP_SUCCESS_ENABLE_EMAIL,
                "cf4693fb-d46d-4dff-992f-e17b5ab4c059",
                ["Yes", "No"],
                task_types,
            ),
            define(
                CP_SUCCESS_INFLUXDB,
                "a5191362-1b65-47a8-ac65-dde3f80f76aa",
                ["Yes", "No"],
                task_types,
            ),
            define(
                CP_FAILED_NEW_RELIC_ACCOUNT,
                "81f187de-a684-4915-8963-9a250a3397b2",
                ["Acme Production", "Acme Finance"],
                task_types,
            ),
            define(
                CP_DEPARTMENT,
                "cf51823d-f9aa-40ea-b2cd-95fd96f35bfd",
                ["Finance", "Operations", "Sales", "HR"],
                ["App"],
            ),
        ]
    }


def _tags() -> dict[str, Tag]:
    pairs = [
        ("Finance", "18ee90a4-1fee-4b0f-9b81-d62275c03c43"),
        ("Nightly", "36789d2a-4a6d-4e8b-b463-da6072781b82"),
        ("Operations", "6759680b-3b9e-40d1-8bb9-da57352517fe"),
        ("CRM", "0d3f59b7-445a-4dcf-aec5-6308af19f93a"),
        ("HR", "f679b741-8fe7-4d63-a1d9-bc9064131042"),
        ("Export", "85e6f56c-35d1-4926-9daa-6ecac703fa4b"),
        ("Cloud", "5662385b-d9e5-4aed-87c5-48aa7e63aa68"),
        ("Sales", "aedf260c-5e03-497d-81c5-1a4dfc18dc42"),
    ]
    return {name: Tag(id=id_, name=name) for name, id_ in pairs}


def default_site(node: str = NODE) -> Site:
    """A fresh copy of the demo site (mutable: executions get recorded into it)."""
    definitions = _definitions()
    site = Site(node=node, custom_property_definitions=definitions)
    tags = _tags()

    def values(owner: str, **by_name: list[str]) -> list[CustomPropertyValue]:
        return [
            CustomPropertyValue(
                id=derived_id(owner, name, value), definition=definitions[name], value=value
            )
            for name, chosen in by_name.items()
            for value in chosen
        ]

    anna = User(
        USER_ANNA_ID,
        "CORP",
        "anna",
        "Anna Lindqvist",
        ["anna.lindqvist@example.com", "anna@sales.example.com"],
    )
    goran = User(USER_GORAN_ID, "CORP", "goran", "Göran Sander", ["goran.sander@example.com"])
    service = User(USER_NO_EMAIL_ID, "CORP", "svc_hr_etl", "HR ETL service account", [])
    finance = Stream(STREAM_FINANCE_ID, "Finance")
    operations = Stream(STREAM_OPERATIONS_ID, "Operations")
    sales = Stream(STREAM_SALES_ID, "Sales")
    site.add(anna, goran, service, finance, operations, sales)

    site.add(
        App(
            id=APP_SALES_ID,
            name="Sales dashboard",
            owner_id=USER_ANNA_ID,
            description="Sales figures per region, reloaded every night",
            stream=finance,
            file_size=48_211_904,
            created=_utc(2022, 3, 14, 9, 30, 0),
            modified=_utc(2024, 6, 3, 14, 12, 45),
            modified_by="CORP\\anna",
            last_reload=_utc(2024, 6, 9, 0, 2, 41),
            publish_time=_utc(2022, 3, 15, 8, 0, 0),
            tags=[tags["Finance"], tags["Sales"]],
            custom_properties=values(APP_SALES_ID, Department=["Finance"]),
        ),
        App(
            id=APP_INVENTORY_ID,
            name="Inventory snapshot",
            owner_id=USER_GORAN_ID,
            description="Stock levels per warehouse",
            stream=operations,
            file_size=12_883_456,
            created=_utc(2023, 1, 9, 10, 0, 0),
            modified=_utc(2024, 5, 28, 7, 45, 10),
            modified_by="CORP\\goran",
            last_reload=_utc(2024, 6, 8, 11, 20, 5),
            publish_time=_utc(2023, 1, 10, 12, 0, 0),
            tags=[tags["Operations"]],
            custom_properties=values(APP_INVENTORY_ID, Department=["Operations"]),
        ),
        App(
            id=APP_CUSTOMERS_ID,
            name="Customer 360",
            owner_id=USER_GORAN_ID,
            description="Customers, orders and support cases in one place",
            stream=sales,
            file_size=96_540_672,
            created=_utc(2021, 11, 2, 13, 0, 0),
            modified=_utc(2024, 4, 17, 16, 5, 0),
            modified_by="CORP\\goran",
            last_reload=_utc(2024, 6, 10, 1, 30, 18),
            publish_time=_utc(2021, 11, 3, 9, 0, 0),
            tags=[tags["CRM"], tags["Sales"]],
            custom_properties=values(APP_CUSTOMERS_ID, Department=["Sales"]),
        ),
        App(
            id=APP_HR_ID,
            name="HR headcount",
            owner_id=USER_NO_EMAIL_ID,
            description="",
            stream=None,
            file_size=3_145_728,
            created=_utc(2024, 2, 20, 8, 15, 0),
            modified=_utc(2024, 6, 1, 9, 0, 0),
            modified_by="CORP\\svc_hr_etl",
            last_reload=_utc(2024, 5, 31, 22, 0, 9),
            publish_time=NEVER,
            tags=[tags["HR"]],
            custom_properties=values(APP_HR_ID, Department=["HR"]),
        ),
        App(
            id=APP_BUDGET_ID,
            name="Budget FY2025",
            owner_id=USER_ANNA_ID,
            description="Budget and forecast, FY2025",
            stream=finance,
            file_size=7_340_032,
            created=_utc(2024, 1, 8, 8, 0, 0),
            modified=_utc(2024, 6, 4, 10, 30, 0),
            modified_by="CORP\\anna",
            last_reload=_utc(2024, 6, 10, 3, 0, 21),
            publish_time=_utc(2024, 1, 9, 8, 0, 0),
            tags=[tags["Finance"]],
            custom_properties=values(APP_BUDGET_ID, Department=["Finance"]),
        ),
    )

    next_night = _utc(2030, 1, 1, 0, 0, 0)
    site.add(
        Task(
            id=TASK_FAILED_ID,
            name=TASK_FAILED_NAME,
            task_type=TaskType.RELOAD,
            app_id=APP_SALES_ID,
            tags=[tags["Finance"], tags["Nightly"]],
            custom_properties=values(
                TASK_FAILED_ID,
                Butler_FailedAlertEnableEmail=["Yes"],
                Butler_FailedAlertSendToEmail=["finance-bi@example.com", "ops-oncall@example.com"],
                Butler_FailedTask_Event_NewRelicAccount=["Acme Production"],
            ),
            max_retries=2,
            modified_by="CORP\\anna",
            modified=_utc(2024, 6, 3, 14, 20, 0),
            created=_utc(2022, 3, 14, 9, 45, 0),
            next_execution=next_night,
        ),
        Task(
            id=TASK_ABORTED_ID,
            name=TASK_ABORTED_NAME,
            task_type=TaskType.RELOAD,
            app_id=APP_INVENTORY_ID,
            tags=[tags["Operations"]],
            custom_properties=values(TASK_ABORTED_ID, Butler_FailedAlertEnableEmail=["Yes"]),
            is_manually_triggered=True,
            modified_by="CORP\\goran",
            modified=_utc(2024, 5, 28, 7, 50, 0),
            created=_utc(2023, 1, 9, 10, 5, 0),
            next_execution=NEVER,
        ),
        Task(
            id=TASK_SUCCEEDED_ID,
            name=TASK_SUCCEEDED_NAME,
            task_type=TaskType.RELOAD,
            app_id=APP_CUSTOMERS_ID,
            tags=[tags["CRM"], tags["Nightly"]],
            custom_properties=values(
                TASK_SUCCEEDED_ID,
                Butler_SuccessReloadTask_InfluxDB=["Yes"],
                Butler_SuccessAlertEnableEmail=["Yes"],
            ),
            max_retries=1,
            modified_by="CORP\\goran",
            modified=_utc(2024, 4, 17, 16, 10, 0),
            created=_utc(2021, 11, 2, 13, 10, 0),
            next_execution=next_night,
        ),
        Task(
            id=TASK_NO_OWNER_EMAIL_ID,
            name=TASK_NO_OWNER_EMAIL_NAME,
            task_type=TaskType.RELOAD,
            app_id=APP_HR_ID,
            tags=[tags["HR"], tags["Nightly"]],
            custom_properties=values(
                TASK_NO_OWNER_EMAIL_ID,
                Butler_FailedAlertEnableEmail=["Yes"],
                Butler_FailedAlertSendToEmail=["hr-analytics@example.com"],
            ),
            is_partial_reload=True,
            modified_by="CORP\\svc_hr_etl",
            modified=_utc(2024, 6, 1, 9, 5, 0),
            created=_utc(2024, 2, 20, 8, 20, 0),
            session_timeout=60,
            next_execution=next_night,
        ),
        Task(
            id=TASK_EXTERNAL_ID,
            name=TASK_EXTERNAL_NAME,
            task_type=TaskType.EXTERNAL_PROGRAM,
            tags=[tags["Export"]],
            custom_properties=values(TASK_EXTERNAL_ID, Butler_FailedAlertEnableEmail=["No"]),
            modified_by="CORP\\goran",
            modified=_utc(2024, 3, 5, 12, 0, 0),
            created=_utc(2024, 3, 5, 11, 30, 0),
            next_execution=next_night,
            path="C:\\Scripts\\export_datalake.cmd",
            parameters="--snapshot nightly",
        ),
        Task(
            id=TASK_DISTRIBUTE_ID,
            name=TASK_DISTRIBUTE_NAME,
            task_type=TaskType.DISTRIBUTE,
            tags=[tags["Cloud"]],
            modified_by="CORP\\anna",
            modified=_utc(2024, 2, 1, 9, 0, 0),
            created=_utc(2024, 2, 1, 8, 45, 0),
            next_execution=next_night,
        ),
        Task(
            id=TASK_SEMICOLON_ID,
            name=TASK_SEMICOLON_NAME,
            task_type=TaskType.RELOAD,
            app_id=APP_BUDGET_ID,
            tags=[tags["Finance"]],
            custom_properties=values(TASK_SEMICOLON_ID, Butler_FailedAlertEnableEmail=["Yes"]),
            modified_by="CORP\\anna",
            modified=_utc(2024, 6, 4, 10, 35, 0),
            created=_utc(2024, 1, 8, 8, 10, 0),
            next_execution=next_night,
        ),
        Task(
            id=TASK_NEVER_RUN_ID,
            name=TASK_NEVER_RUN_NAME,
            task_type=TaskType.RELOAD,
            app_id=APP_CUSTOMERS_ID,
            tags=[tags["CRM"]],
            enabled=False,
            modified_by="CORP\\goran",
            modified=_utc(2024, 6, 5, 15, 0, 0),
            created=_utc(2024, 6, 5, 14, 55, 0),
            next_execution=NEVER,
        ),
    )

    baseline: list[tuple[str, Outcome, datetime, tuple[str, str, str] | None]] = [
        (
            TASK_FAILED_ID,
            "failed",
            _local(2024, 6, 10, 2, 0, 3),
            (FAILED_RESULT_ID, FAILED_EXECUTION_ID, FAILED_FILE_REFERENCE_ID),
        ),
        (
            TASK_ABORTED_ID,
            "aborted",
            _local(2024, 6, 10, 15, 30, 2),
            (ABORTED_RESULT_ID, ABORTED_EXECUTION_ID, ABORTED_FILE_REFERENCE_ID),
        ),
        (
            TASK_SUCCEEDED_ID,
            "succeeded",
            _local(2024, 6, 10, 3, 30, 0),
            (SUCCEEDED_RESULT_ID, SUCCEEDED_EXECUTION_ID, SUCCEEDED_FILE_REFERENCE_ID),
        ),
        (TASK_NO_OWNER_EMAIL_ID, "failed", _local(2024, 6, 10, 0, 0, 4), None),
        (TASK_EXTERNAL_ID, "failed", _local(2024, 6, 10, 4, 0, 0), None),
        (TASK_DISTRIBUTE_ID, "succeeded", _local(2024, 6, 10, 4, 30, 0), None),
        (TASK_SEMICOLON_ID, "succeeded", _local(2024, 6, 10, 5, 0, 1), None),
    ]
    for task_id, outcome, start, ids in baseline:
        result_id, execution_id, file_reference_id = ids or (
            derived_id(task_id, "result"),
            derived_id(task_id, "execution"),
            derived_id(task_id, "file-reference"),
        )
        task = site.tasks[task_id]
        site.record(
            new_execution(
                site,
                task,
                outcome,
                result_id=result_id,
                execution_id=execution_id,
                file_reference_id=file_reference_id if task.task_type == TaskType.RELOAD else None,
                start=start,
            )
        )
    return site
