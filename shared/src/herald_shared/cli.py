"""The ``herald`` command.

- ``herald run <service> --config herald.yaml``: one service (what each container runs).
- ``herald up --config herald.yaml``: every installed service whose section is in the file.
- ``herald check-config --config herald.yaml``: validate every section the installed services read,
  and list the deprecated spellings the file still uses.
- ``herald send-test --config herald.yaml``: a synthetic event through the pipeline, with its receipts.
- ``herald tail --config herald.yaml``: every event, receipt, dead letter and status, readably.
- ``herald silence add | list | expire``: silences on the broker (``silence_command.py``).
- ``herald replay [ID…]``: deliver dead letters again and follow them (``replay_command.py``).

Other packages add commands (``herald qlik-sim``, …) through the ``herald.commands`` entry-point
group: each entry point is a function that receives the subcommand parsers and registers its own.
Configuration errors are printed one per line and exit with status 2, before anything connects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points
from typing import Any

from herald_shared import config, preflight, replay_command, sendtest, silence_command, tail
from herald_shared.config import ConfigError
from herald_shared.runtime import (
    ProcessSettings,
    ServiceSpec,
    configure,
    installed_service,
    installed_service_names,
    installed_services,
    serve,
)
from herald_shared.self_report import herald_version

__all__ = ["BUILT_IN", "EXIT_CONFIG", "add_config_argument", "main"]

EXIT_CONFIG = 2


BUILT_IN = ("run", "up", "check-config", "send-test", "tail", "silence", "replay")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Other packages' commands import what they need (the Qlik stand-in brings a web server and
    # a crypto library); a service process started with `herald run` must not carry them.
    parser = _parser(with_plugins=not argv or argv[0] not in BUILT_IN)
    arguments = parser.parse_args(argv)
    try:
        result: int = arguments.handler(arguments)
    except ConfigError as error:
        for problem in error.problems:
            print(f"herald: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return result


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        default=os.environ.get(config.ENV_CONFIG_PATH, "herald.yaml"),
        help="the configuration file (default: $HERALD_CONFIG or ./herald.yaml)",
    )


def _parser(*, with_plugins: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herald", description="Herald: Qlik Sense reload alerts over MQTT."
    )
    parser.add_argument("--version", action="version", version=f"herald {herald_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run one service")
    installed = ", ".join(installed_service_names()) or "none"
    run.add_argument("service", help=f"the service to run (installed: {installed})")
    add_config_argument(run)
    run.set_defaults(handler=_run)

    up = commands.add_parser("up", help="run every installed service configured in the file")
    add_config_argument(up)
    up.set_defaults(handler=_up)

    check = commands.add_parser("check-config", help="validate the configuration and exit")
    add_config_argument(check)
    check.add_argument(
        "--secrets-not-mounted",
        action="store_true",
        help="checking away from where Herald runs: secret, certificate and key files need only "
        "be absolute paths (they are not read), ports are not tried",
    )
    check.set_defaults(handler=_check_config)

    sendtest.register(commands)
    tail.register(commands)
    silence_command.register(commands)
    replay_command.register(commands)
    if with_plugins:
        for entry_point in entry_points(group="herald.commands"):
            entry_point.load()(commands)
    return parser


def _run(arguments: argparse.Namespace) -> int:
    spec = installed_service(arguments.service)
    if spec is None:
        known = ", ".join(installed_service_names()) or "none"
        print(
            f"herald: no service named {arguments.service!r} is installed (installed: {known})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    document = config.load(arguments.config)
    if not document.has_section(spec.section):
        print(
            f"herald: {arguments.config} has no {spec.section} section: `herald run {spec.name}` "
            f"needs one (herald.example.yaml shows every key)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if not _enabled(document.data[spec.section]):
        print(
            f"herald: {arguments.config}: {spec.section}.enabled is false: {spec.name} is turned "
            "off in this file; set it to true to run it",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return _serve(arguments.config, lambda _document: [spec])


def _up(arguments: argparse.Namespace) -> int:
    document = config.load(arguments.config)
    chosen = _configured(document, installed_services().values())
    if not chosen:
        print(
            f"herald: {arguments.config} configures none of the installed services "
            f"({', '.join(installed_services())})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return _serve(
        arguments.config, lambda document: _configured(document, installed_services().values())
    )


def _configured(
    document: config.ConfigDocument, specs: Iterable[ServiceSpec[Any]]
) -> list[ServiceSpec[Any]]:
    """The services `herald up` runs: those whose section is present and enabled."""
    return [
        spec
        for spec in specs
        if document.has_section(spec.section) and _enabled(document.data[spec.section])
    ]


def _enabled(section: Any) -> bool:
    """``enabled: false`` (or no, off, 0) turns a configured service off for `herald up`."""
    if not isinstance(section, dict):
        return True
    return str(section.get("enabled", True)).lower() not in ("false", "no", "off", "0")


def _serve(path: str, chosen: Callable[[config.ConfigDocument], list[ServiceSpec[Any]]]) -> int:
    """Run ``chosen(document)``; a reload reads ``path`` again and chooses again."""

    def reconfigure() -> tuple[config.ConfigDocument, ProcessSettings]:
        document = config.load(path)
        specs = chosen(document)
        if not specs:
            raise ConfigError([f"{path} configures none of the installed services"])
        return document, configure(document, specs)

    document, process = reconfigure()
    return asyncio.run(serve(document, process, reconfigure))


def _check_config(arguments: argparse.Namespace) -> int:
    """Every installed service's sections are validated; what the configured ones point at is
    checked as `herald run` checks it (herald_shared.preflight)."""
    mounted = not arguments.secrets_not_mounted
    with contextlib.nullcontext() if mounted else preflight.secrets_not_mounted():
        document = config.load(arguments.config)
        services = installed_services()
        process = configure(document, list(services.values()))
    chosen = {spec.name for spec in _configured(document, services.values())}
    if not chosen:
        print(
            f"herald: {arguments.config} configures none of the installed services "
            f"({', '.join(services)}): add a section for one of them",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    process.services = [
        (spec, settings) for spec, settings in process.services if spec.name in chosen
    ]
    warnings = preflight.run(document, process, mounted=mounted)
    if mounted:
        asyncio.run(preflight.broker_account(document, process))
    # Old spellings still work: they are reported, but the file is valid (exit 0).
    for sentence in document.deprecations:
        print(sentence)
    # What works but should not stay so: said, the file is still valid (exit 0).
    for warning in warnings:
        print(f"warning: {warning}")
    others = [name for name in services if name not in chosen]
    unused = f" (not configured: {', '.join(others)})" if others else ""
    print(f"{arguments.config}: valid for {', '.join(sorted(chosen))}{unused}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
