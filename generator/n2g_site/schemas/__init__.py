"""JSON Schemas of the work dir's documented files, and a validator.

>>> validate({"schema": "n2g-site/graph/1", "nodes": []}, "graph")
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    schemas = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in HERE.glob("*.schema.json")}
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return Draft202012Validator(schemas[f"{name}.schema.json"], registry=registry)


def validate(obj: Any, name: str) -> None:
    """Raise ValueError naming the first problem if ``obj`` does not match schema ``name`` (graph, neuron-fit,
    neuron)."""
    error = next(iter(_validator(name).iter_errors(obj)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise ValueError(f"{name} JSON is invalid at {where}: {error.message}")
