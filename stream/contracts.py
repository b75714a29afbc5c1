"""Generated contracts: a JSON Schema per topic and an AsyncAPI 3 document, from the pydantic models.

The models in :mod:`stream.schemas` are the source of truth; the files under
``contracts/`` are what other teams read (and validate against) without
Python. ``meterseg contracts`` rewrites them; ``meterseg contracts --check``
(and a test) fails when they are stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from meterseg.settings import Settings
from processors.features import DailyProfile
from stream.schemas import TOPIC_PAYLOADS as EVENT_PAYLOADS
from stream.topics import topic_specs

#: every topic's payload models: the public events plus the engine's internal topics
TOPIC_PAYLOADS: dict[str, tuple[type[BaseModel], ...]] = {**EVENT_PAYLOADS, "profiles": (DailyProfile,)}

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / "contracts"


def _dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def topic_schema(topic: str, models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    """A standalone JSON Schema (draft 2020-12) for one topic's payload."""
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"meterseg/{topic}.json",
        "title": f"payload of {topic}",
        "$defs": defs.get("$defs", {}),
    }
    refs = [{"$ref": f"#/$defs/{m.__name__}"} for m in models]
    if len(refs) == 1:
        schema.update(refs[0])
    else:
        schema["oneOf"] = refs
    return schema


def asyncapi(settings: Settings) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic, key and payload."""
    all_models = sorted({m for ms in TOPIC_PAYLOADS.values() for m in ms}, key=lambda m: m.__name__)
    _, defs = models_json_schema([(m, "validation") for m in all_models], ref_template="#/components/schemas/{model}")
    specs = {spec.name: spec for spec in topic_specs(settings)}
    names = settings.topics.model_dump()
    consumed = {"readings", "heartbeats", "purchases", "registry", "maintenance", "feedback", "bills"}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for attr, models in TOPIC_PAYLOADS.items():
        spec = specs[names[attr]]
        for m in models:
            messages[m.__name__] = {
                "name": m.__name__,
                "contentType": "application/json",
                "summary": (m.__doc__ or "").strip().splitlines()[0],
                "payload": {"$ref": f"#/components/schemas/{m.__name__}"},
                "bindings": {"kafka": {"key": {"type": "string", "description": spec.key}, "bindingVersion": "0.5.0"}},
            }
        channels[attr] = {
            "address": spec.name,
            "description": f"keyed by {spec.key}" + ("; compacted" if spec.compacted else "")
            + (f". {spec.note}" if spec.note else ""),
            "messages": {m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in models},
            "bindings": {
                "kafka": {
                    "topic": spec.name,
                    "partitions": spec.partitions or settings.partitions,
                    "replicas": 1,
                    "topicConfiguration": {"cleanup.policy": ["compact" if spec.compacted else "delete"]},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        operations[f"{'receive' if attr in consumed else 'send'}_{attr}"] = {
            "action": "receive" if attr in consumed else "send",
            "channel": {"$ref": f"#/channels/{attr}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "meterseg",
            "version": "1.0.0",
            "description": "Topics, keys and payloads of meterseg's streaming engine (operations from the engine's side).",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": settings.kafka_bootstrap, "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": defs.get("$defs", {})},
    }


def render() -> dict[str, str]:
    """Relative path → file content of every generated contract (default settings)."""
    settings = Settings(kafka_bootstrap="127.0.0.1:9092", partitions=4)
    names = settings.topics.model_dump()
    files = {
        f"schemas/{names[attr]}.json": _dump_json(topic_schema(names[attr], models))
        for attr, models in TOPIC_PAYLOADS.items()
    }
    files["asyncapi.yaml"] = yaml.safe_dump(asyncapi(settings), sort_keys=False, allow_unicode=True, width=120)
    return files


def stale(root: Path = CONTRACTS) -> list[str]:
    """Generated files that differ from (or are missing in) ``root``."""
    out = []
    for rel, content in render().items():
        path = root / rel
        if not path.exists() or path.read_text() != content:
            out.append(rel)
    return out


def write(root: Path = CONTRACTS) -> list[str]:
    written = []
    for rel, content in render().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            written.append(rel)
    return written


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "contracts",
        help="regenerate the JSON Schemas and AsyncAPI document under contracts/",
        description="Write contracts/schemas/<topic>.json and contracts/asyncapi.yaml from the pydantic models.",
    )
    p.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.check:
        out = stale()
        for rel in out:
            print(f"stale: contracts/{rel}", file=sys.stderr)
        return 1 if out else 0
    for rel in write():
        print(f"wrote contracts/{rel}")
    return 0
