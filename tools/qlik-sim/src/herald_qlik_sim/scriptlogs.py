"""Script logs as the Qlik Sense engine writes them: one timestamped line each, CRLF-separated.

``script_log`` renders the log of one execution from the execution's start time (in the node's
local time zone, like the engine) for a failed, aborted or successful reload of an app. The
failed log is about sixty lines and ends in a real-looking ``Field not found`` error.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from herald_qlik_sim.model import Outcome

SERVER_VERSION = "14.187.4"

# (seconds after start, text). Lines of the load script carry their four-digit line number.
_Lines = list[tuple[float, str]]


def _header(user: str, app_id: str) -> _Lines:
    directory, _, user_id = user.partition("\\")
    return [
        (0.000, "Execution started."),
        (0.002, f"Qlik Sense Server Version {SERVER_VERSION}"),
        (0.002, "CPU Target                    x64"),
        (0.002, "Operating System              Windows Server 2019 Standard  (64 bit edition)"),
        (0.002, "Wow64 mode                    Not using Wow64"),
        (0.002, "MDAC Version                  6.3.9600.16384"),
        (0.002, "MDAC Full Install Version     6.3.9600.16384"),
        (0.002, "PreferredCulture              en-US"),
        (0.002, "EnableParallelReload          UseMultiple"),
        (0.002, "ParallelReloadMaxThreads      6"),
        (
            0.002,
            f"Reload Executed By            UserDirectory={directory.upper()}; UserId={user_id}",
        ),
        (0.002, "Process ID                    6868"),
        (0.004, f"Object ID                     {app_id}"),
        (0.110, "0002  SET ThousandSep=',';"),
        (0.110, "0003  SET DecimalSep='.';"),
        (0.111, "0004  SET MoneyThousandSep=',';"),
        (0.111, "0005  SET MoneyDecimalSep='.';"),
        (0.111, "0006  SET MoneyFormat='$#,##0.00;-$#,##0.00';"),
        (0.112, "0007  SET TimeFormat='h:mm:ss TT';"),
        (0.112, "0008  SET DateFormat='YYYY-MM-DD';"),
        (0.112, "0009  SET TimestampFormat='YYYY-MM-DD h:mm:ss[.fff] TT';"),
        (0.113, "0010  SET FirstWeekDay=0;"),
        (0.113, "0011  SET CollationLocale='en-US';"),
        (0.114, "0013  LET vToday = Today();"),
        (0.114, "0014  LET vFromDate = AddYears(vToday, -3);"),
    ]


def _extract() -> _Lines:
    return [
        (0.115, "0016  TRACE Loading orders since $(vFromDate);"),
        (0.115, "      Loading orders since 2021-06-10"),
        (0.116, "0018  CountryMap:"),
        (0.116, "0019  MAPPING LOAD CountryCode, CountryName"),
        (0.116, "0020  FROM [lib://DataFiles/Countries.qvd] (qvd)"),
        (0.131, "      249 Lines fetched"),
        (0.140, "0025  LIB CONNECT TO 'SQL_Sales (corp_sa_qlik)'"),
        (0.612, "      Connected."),
        (0.613, "0027  Orders:"),
        (0.613, "0028  LOAD"),
        (0.613, "0029      OrderID,"),
        (0.613, "0030      CustomerID,"),
        (0.613, "0031      OrderDate,"),
        (0.614, "0032      Region_Code,"),
        (0.614, "0033      Amount"),
        (0.614, "0034  ;"),
        (0.614, "0035  SQL SELECT OrderID, CustomerID, OrderDate, RegionCode, Amount"),
        (0.614, "0036  FROM dbo.Orders WHERE OrderDate >= '2021-06-10'"),
        (11.904, "      1,284,519 Lines fetched"),
        (11.905, "0038  Customers:"),
        (11.905, "0039  LOAD CustomerID, CustomerName, Segment, Country"),
        (11.905, "0040  FROM [lib://DataFiles/Customers.qvd] (qvd)"),
        (12.431, "      48,210 Lines fetched"),
    ]


def _failed() -> _Lines:
    return [
        (12.432, "0042  LEFT JOIN (Orders)"),
        (12.432, "0043  LOAD"),
        (12.432, "0044      Region_Code,"),
        (12.432, "0045      RegionName,"),
        (12.433, "0046      SalesManager"),
        (12.433, "0047  FROM [lib://DataFiles/Regions.xlsx]"),
        (12.433, "0048  (ooxml, embedded labels, table is Regions)"),
        (12.874, "      Error: Field 'Region_Code' not found"),
        (12.874, "      The error occurred here:"),
        (
            12.874,
            "      LEFT JOIN (Orders) LOAD Region_Code, RegionName, SalesManager"
            " FROM [lib://DataFiles/Regions.xlsx] (ooxml, embedded labels, table is Regions)",
        ),
        (12.875, "      "),
        (12.881, "Execution Failed"),
        (12.902, "Execution finished."),
    ]


def _aborted() -> _Lines:
    return [
        (12.432, "0042  Calendar:"),
        (12.432, "0043  LOAD Date($(vFromDate) + IterNo() - 1) AS OrderDate"),
        (12.433, "0044  AUTOGENERATE 1 WHILE $(vFromDate) + IterNo() - 1 <= $(vToday);"),
        (12.433, "0046  FOR EACH vFile IN FileList('lib://DataFiles/Stock/*.csv')"),
        (12.980, "0047      Stock:"),
        (12.980, "0048      LOAD * FROM [$(vFile)] (txt, utf8, embedded labels, delimiter is ',')"),
        (311.204, "      Abort requested by user"),
        (311.407, "Execution aborted."),
        (311.409, "Execution finished."),
    ]


def _succeeded() -> _Lines:
    return [
        (12.432, "0042  LEFT JOIN (Orders)"),
        (12.432, "0043  LOAD RegionCode AS Region_Code, RegionName, SalesManager"),
        (12.433, "0044  FROM [lib://DataFiles/Regions.xlsx]"),
        (12.433, "0045  (ooxml, embedded labels, table is Regions)"),
        (12.790, "      12 Lines fetched"),
        (12.791, "0047  STORE Orders INTO [lib://DataFiles/Orders.qvd] (qvd);"),
        (16.118, "0049  DROP TABLE Customers;"),
        (16.120, "      Creating search index"),
        (18.552, "      Search index creation completed successfully"),
        (18.553, "      App saved"),
        (18.560, "---"),
        (18.561, "Execution finished."),
    ]


_BODIES = {"failed": _failed, "aborted": _aborted, "succeeded": _succeeded}


def lines(outcome: Outcome, *, user: str, app_id: str) -> _Lines:
    return _header(user, app_id) + _extract() + _BODIES[outcome]()


def elapsed(outcome: Outcome) -> timedelta:
    """How long the reload ran: the offset of its last line."""
    return timedelta(seconds=_BODIES[outcome]()[-1][0])


def script_log(outcome: Outcome, *, start: datetime, user: str, app_id: str) -> str:
    """The whole log, lines joined with CRLF (no trailing line break, like the engine's file)."""
    return "\r\n".join(
        f"{_stamp(start + timedelta(seconds=offset))} {text}"
        for offset, text in lines(outcome, user=user, app_id=app_id)
    )


def _stamp(moment: datetime) -> str:
    """``20240610T020014.812+0200``: the engine's local timestamp."""
    return (
        moment.strftime("%Y%m%dT%H%M%S.")
        + f"{moment.microsecond // 1000:03d}"
        + moment.strftime("%z")
    )
