"""``herald import-butler BUTLER_YAML [--templates DIR] --out DIR [--write-secrets] [--force]``.

Writes ``DIR/herald.yaml``, Butler's templates converted to Jinja2 under ``DIR/templates/``
(e-mail bodies as ``email/<outcome>.html``, Slack and Teams payloads as
``<slack|teams>-<outcome>/<outcome>.yaml``) and, with ``--write-secrets`` only, each secret in
its own file under ``DIR/secrets/`` (mode 0600). Without it the report lists the files to create;
a secret's value is never printed and never written to herald.yaml. The report goes to standard
output and to ``DIR/import-report.txt``. An existing ``DIR/herald.yaml`` (perhaps edited since)
is only replaced with ``--force``. Exit 0 on success, 2 when the Butler file cannot be read or
the output would replace a file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from herald_butler_import.convert import Import, convert
from herald_butler_import.handlebars import ConversionError, to_jinja, to_payload

__all__ = ["register_import", "run_import"]

EXIT_INPUT = 2


def register_import(commands: Any) -> None:
    parser = commands.add_parser(
        "import-butler", help="write herald.yaml and templates from a Butler configuration"
    )
    parser.add_argument("butler_yaml", type=Path, help="Butler's configuration (production.yaml)")
    parser.add_argument(
        "--templates", type=Path, help="the folder with Butler's .handlebars templates"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="where herald.yaml and templates go"
    )
    parser.add_argument(
        "--write-secrets",
        action="store_true",
        help="write each secret to OUT/secrets/<name> (mode 0600); default: list the files to create",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an existing OUT/herald.yaml (and templates)"
    )
    parser.set_defaults(handler=_handler)


def _handler(arguments: argparse.Namespace) -> int:
    out: Path = arguments.out
    if (out / "herald.yaml").exists() and not arguments.force:
        print(
            f"herald: {out / 'herald.yaml'} exists: give --force to replace it, or another --out",
            file=sys.stderr,
        )
        return EXIT_INPUT
    return run_import(arguments.butler_yaml, arguments.templates, out, arguments.write_secrets)


def run_import(source: Path, templates: Path | None, out: Path, write_secrets: bool) -> int:
    try:
        butler = yaml.safe_load(source.read_text(encoding="utf-8"))
        result = convert(butler, out)
    except (OSError, yaml.YAMLError, ValueError) as error:
        print(f"herald: {source}: cannot import: {error}", file=sys.stderr)
        return EXIT_INPUT
    out.mkdir(parents=True, exist_ok=True)
    _templates(result, templates, out)
    _secrets(result, out, write_secrets)
    (out / "herald.yaml").write_text(
        _header(source) + yaml.safe_dump(result.document, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    report = result.report.text()
    (out / "import-report.txt").write_text(report, encoding="utf-8")
    print(report, end="")
    print(
        f"Wrote {out / 'herald.yaml'}; check it with: herald check-config --config {out / 'herald.yaml'}"
    )
    return 0


def _header(source: Path) -> str:
    return (
        f"# Imported from the Butler configuration {source.name} by `herald import-butler`.\n"
        "# What was mapped, what has no counterpart and what behaves differently: import-report.txt\n"
        "# and docs/migrating-from-butler.md. Every key: deploy/config/herald.example.yaml.\n"
    )


def _secrets(result: Import, out: Path, write: bool) -> None:
    folder = out / "secrets"
    if not result.secrets:
        return
    if not write:
        for name in sorted(result.secrets):
            result.report.notes.append(
                f"create {folder / name} (mode 0600) with the secret herald.yaml points at, or run "
                "again with --write-secrets"
            )
        return
    folder.mkdir(mode=0o700, exist_ok=True)
    for name, value in result.secrets.items():
        path = folder / name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(value)
        path.chmod(0o600)
    result.report.notes.append(
        f"{len(result.secrets)} secret files written to {folder} (mode 0600)"
    )


def _find(templates: Path | None, kind: str, name: str) -> Path | None:
    if templates is None:
        return None
    candidates = sorted(templates.rglob(f"{name}.handlebars")) + sorted(templates.rglob(name))
    preferred = [path for path in candidates if kind in path.parent.name.lower()]
    found = preferred or [path for path in candidates if path.is_file()]
    return found[0] if found else None


def _templates(result: Import, templates: Path | None, out: Path) -> None:
    from herald_butler_import.fields import CHAT_ROOTS, EMAIL_ROOTS

    for kind, name, outcome in result.templates:
        path = _find(templates, kind, name)
        unknown: set[str] = set()
        if path is None:
            result.report.notes.append(
                f"{kind} template {name}.handlebars ({outcome}) not found"
                + (f" under {templates}" if templates else " (give --templates)")
                + f": Herald's built-in {outcome} template is used"
            )
            _use_built_in(result.document, kind, outcome)
            continue
        try:
            source = path.read_text(encoding="utf-8")
            if kind == "email":
                target = out / "templates" / "email" / f"{outcome}.html"
                text = to_jinja(source, EMAIL_ROOTS, html=True, unknown=unknown)
            else:
                target = out / "templates" / f"{kind}-{outcome}" / f"{outcome}.yaml"
                structure = to_payload(source, CHAT_ROOTS, unknown=unknown)
                text = yaml.safe_dump(structure, sort_keys=False, allow_unicode=True, width=1000)
        except ConversionError as error:
            result.report.notes.append(
                f"{path}: cannot convert ({error}): Herald's built-in {outcome} template is used; "
                "convert it by hand (docs/templates.md)"
            )
            _use_built_in(result.document, kind, outcome)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        result.report.mapped.append(f"template {path.name} → {target.relative_to(out)}")
        for field_name in sorted(unknown):
            result.report.notes.append(
                f"{path.name}: {{{{{field_name}}}}} is no template field (Butler rendered it "
                f"empty, so does {target.name}): correct it (docs/templates.md)"
            )


def _use_built_in(document: dict[str, Any], kind: str, outcome: str) -> None:
    if kind == "email":
        document["emailer"][outcome].pop("html_template", None)
        return
    for target in document["chat_notifier"][kind]:
        if target["name"] == f"butler-{outcome}":
            target.pop("template_dir", None)
