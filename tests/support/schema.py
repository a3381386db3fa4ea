"""Validate ``--json`` output against the JSON Schemas in the repository's ``schemas/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent.parent.parent / "schemas"


def _registry() -> Registry:
    reg: Registry = Registry()
    for f in SCHEMAS.glob("*.schema.json"):
        doc = json.loads(f.read_text())
        reg = reg.with_resource(doc["$id"], Resource.from_contents(doc))
    return reg


REGISTRY = _registry()


def validate(data: dict[str, Any]) -> None:
    """Against the schema of the command the output names (a usage error before the
    command was known is checked against ``place``'s, which includes the error form)."""
    command = data.get("command") or "place"
    schema = json.loads((SCHEMAS / f"{command}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema, registry=REGISTRY).validate(data)
