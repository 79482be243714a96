# SPDX-License-Identifier: GPL-2.0-only
"""Validation of `check --json` output against the schema xenprobe ships
(xenprobe/cli/schema/report.schema.json). Only tests need jsonschema; xenprobe does not."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema


@cache
def schema() -> dict[str, Any]:
    text = resources.files("xenprobe.cli.schema").joinpath("report.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema())
    return jsonschema.Draft202012Validator(schema())


def validate(report: Any) -> None:
    """Raise AssertionError naming every place `report` breaks the schema."""
    errors = sorted(_validator().iter_errors(report), key=lambda e: list(e.absolute_path))
    if errors:
        raise AssertionError("check --json does not match report.schema.json:\n" + "\n".join(
            f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:20]))


@cache
def _watch_validator() -> jsonschema.Draft202012Validator:
    text = resources.files("xenprobe.cli.schema").joinpath("watch.schema.json").read_text()
    loaded = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(loaded)
    return jsonschema.Draft202012Validator(loaded)


def validate_watch(line: Any) -> None:
    """Raise AssertionError naming where one `watch --json` line breaks its schema."""
    errors = sorted(_watch_validator().iter_errors(line), key=lambda e: list(e.absolute_path))
    if errors:
        raise AssertionError("watch --json line does not match watch.schema.json:\n"
                             + "\n".join(f"  at /{'/'.join(map(str, e.absolute_path))}: "
                                         f"{e.message}" for e in errors[:20]))
