"""One YAML file configures the whole system; each service validates the sections it uses.

- ``HERALD_<SECTION>__<KEY>__…=value`` overrides any key (the value is read as YAML, so
  ``1884`` is a number and ``[a, b]`` a list). Variables without ``__`` are not overrides, so
  Kubernetes' service-link variables (``HERALD_BROKER_PORT=tcp://…``) cannot break a start.
- Every secret also accepts a ``<name>_file`` sibling: the file's content, trailing newline
  removed (mounted Kubernetes Secrets).
- Errors name the file (or the variable) and the path, e.g.
  ``herald.yaml: emailer.smtp.port: Input should be a valid integer``, and never a secret's value.
- Old spellings (:mod:`herald_shared.spellings`) are rewritten to the new ones while loading, and
  each is kept in :attr:`ConfigDocument.deprecations` for the services to log and
  ``herald check-config`` to print.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationError,
    model_validator,
)

from herald_shared import spellings

__all__ = [
    "ENV_CONFIG_PATH",
    "ENV_PREFIX",
    "SECTIONS",
    "ConfigDocument",
    "ConfigError",
    "Duration",
    "Section",
    "load",
    "reveal",
    "secret_values",
]

ENV_PREFIX: Final = "HERALD_"
ENV_CONFIG_PATH: Final = "HERALD_CONFIG"

#: The top-level sections of herald.yaml (ARCHITECTURE.md, Configuration).
SECTIONS: Final = (
    "broker",
    "qlik",
    "ingest",
    "emailer",
    "chat_notifier",
    "incident_forwarder",
    "metrics_writer",
    "log_archiver",
    "console",
    "logging",
    "health",
    "time_intervals",
)


#: False while checking a file away from where it runs (``check-config --secrets-not-mounted``):
#: a ``*_file`` secret is then only required to be an absolute path, and is not read.
secret_files_mounted: ContextVar[bool] = ContextVar("secret_files_mounted", default=True)


class ConfigError(Exception):
    """The configuration cannot be used. ``problems`` are complete, user-facing lines."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --- value types -----------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def _parse_duration(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, 30s, 5m, 2h or 1d")
    if isinstance(value, int | float):
        # The text form cannot be negative; a number must not be either (a negative backoff
        # would retry in a tight loop, a negative stall_after would fail every liveness probe).
        if not math.isfinite(value) or value < 0:
            raise ValueError("expected a duration such as 30, 30s, 5m, 2h or 1d")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError("expected a duration such as 30, 30s, 5m, 2h or 1d")


#: Seconds, written as a number or as ``250ms``, ``30s``, ``5m``, ``2h``, ``1d``.
Duration = Annotated[float, BeforeValidator(_parse_duration)]


class Section(BaseModel):
    """Base of every configuration model: unknown keys are errors, secrets accept ``_file``."""

    # Numbers where text is expected are taken as text (HERALD_BROKER__PASSWORD=12345678).
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, coerce_numbers_to_str=True
    )

    _secret_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._secret_fields = frozenset(
            name
            for name, info in cls.model_fields.items()
            if info.annotation is not None and SecretStr in _flatten(info.annotation)
        )

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not cls._secret_fields:
            return data
        data = dict(data)
        for name in cls._secret_fields:
            path = data.pop(f"{name}_file", None)
            if path is None:
                continue
            if data.get(name) is not None:
                raise ValueError(f"set either {name} or {name}_file, not both")
            if not secret_files_mounted.get():
                if not Path(str(path)).is_absolute():
                    raise ValueError(f"{name}_file: {path} must be an absolute path")
                data[name] = "not-mounted"
                continue
            try:
                data[name] = Path(str(path)).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as error:
                raise ValueError(f"{name}_file: cannot read {path}: {error.strerror}") from None
            except UnicodeDecodeError:
                raise ValueError(f"{name}_file: {path} is not UTF-8 text") from None
        return data


def _flatten(annotation: Any) -> set[Any]:
    args = getattr(annotation, "__args__", None)
    if not args:
        return {annotation}
    found: set[Any] = set()
    for arg in args:
        found |= _flatten(arg)
    return found


def reveal(secret: SecretStr | None) -> str | None:
    """The secret's value, for the one place that hands it to a library."""
    return None if secret is None else secret.get_secret_value()


class _Loader(yaml.SafeLoader):
    """YAML with only ``true``/``false`` as booleans and no base-60 numbers (as YAML 1.2 has it).

    YAML 1.1 reads ``Yes``, ``No``, ``on`` and ``off`` as booleans, but they are what Qlik custom
    properties hold (``Butler_FailedAlertEnableEmail: [Yes]`` must stay the text ``Yes``); and it
    reads ``17:30`` as the number 1050, but it is a time of day (``time_intervals``), as ``1:3``
    is a range of months.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
for _first in "-+0123456789":  # text, checked before the int and float resolvers
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:str", _SEXAGESIMAL)
    )


# --- the document ----------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


@dataclass
class ConfigDocument:
    """herald.yaml after environment overrides, before any section is validated."""

    path: Path
    data: dict[str, Any]
    # dotted path -> environment variable that set it, so errors can name the real origin
    overridden_by: dict[str, str] = field(default_factory=dict)
    # One sentence per old spelling read, naming the file (or variable) and the key.
    deprecations: list[str] = field(default_factory=list)

    def has_section(self, name: str) -> bool:
        return name in self.data

    def section(self, name: str, model: type[M]) -> M:
        """Validate one section; a missing section takes the model's defaults."""
        raw = self.data.get(name)
        if raw is None:
            raw = {}
        try:
            return model.model_validate(raw)
        except ValidationError as error:
            raise ConfigError(self._describe(name, error)) from None

    def _describe(self, name: str, error: ValidationError) -> list[str]:
        problems = []
        for item in error.errors(include_input=False, include_url=False):
            dotted = _dotted((name, *item["loc"]))
            origin = self._origin(dotted)
            problems.append(f"{origin}: {dotted}: {item['msg']}")
        return problems

    def origin(self, dotted: str) -> str:
        """Where a key's value came from: the file, or the variable that set it."""
        return self._origin(dotted)

    def _origin(self, dotted: str) -> str:
        for key, variable in self.overridden_by.items():
            if dotted == key or dotted.startswith((key + ".", key + "[")):
                return f"{variable} (environment)"
        return str(self.path)


def _dotted(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> ConfigDocument:
    """Read herald.yaml and apply ``HERALD_…__…`` overrides; raises :class:`ConfigError`."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the configuration: {error.strerror}"]) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the configuration must be a mapping of sections"])
    in_file = set(data)
    document = ConfigDocument(path=path, data=data)
    _apply_environment(document, environ)
    unknown = sorted(key for key in document.data if key not in SECTIONS)
    if unknown:
        raise ConfigError(
            f"{_section_origin(document, key, in_file)}: {key}: unknown section "
            f"(known: {', '.join(SECTIONS)})"
            for key in unknown
        )
    _rewrite_old_spellings(document)
    return document


def _rewrite_old_spellings(document: ConfigDocument) -> None:
    found, conflicts = spellings.rewrite(document.data)
    if conflicts:
        raise ConfigError(_sentences(document, conflicts))
    document.deprecations = _sentences(document, found)


def _sentences(document: ConfigDocument, found: list[spellings.Found]) -> list[str]:
    sentences = []
    for item in found:
        dotted = _dotted(item.loc)
        sentences.append(f"{document._origin(dotted)}: {dotted}{item.text}")
    return sentences


def _section_origin(document: ConfigDocument, section: str, in_file: set[str]) -> str:
    """Where a section came from: the file, or the variable that created it (HERALD_BROKR__…)."""
    if section not in in_file:
        for key, variable in document.overridden_by.items():
            if key.startswith(section + "."):
                return f"{variable} (environment)"
    return str(document.path)


def _apply_environment(document: ConfigDocument, environ: Mapping[str, str]) -> None:
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or "__" not in variable:
            continue
        keys = [part.lower() for part in variable[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            raise ConfigError([f"{variable} (environment): empty key in the variable's name"])
        try:
            value = yaml.load(environ[variable], Loader=_Loader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError:
            value = environ[variable]
        node = document.data
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[keys[-1]] = value
        document.overridden_by[".".join(keys)] = variable


def secret_values(model: BaseModel) -> list[str]:
    """Every secret's value inside a validated model, for the log redaction filter."""
    found: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, SecretStr):
            if value.get_secret_value():
                found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                visit(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    visit(model)
    return found
