"""The README describes the code as it is (issue 16, finding 11): checks a reviewer would otherwise do by hand.

- the architecture diagram names every topic of ``TopicNames`` (it used to omit meterseg.profiles and
  model.events) and Redis;
- every repository path the README names in backticks exists;
- every ``METERSEG_*`` variable of its configuration table is a field of ``Settings`` (or of a nested block).
"""

from __future__ import annotations

import re
from pathlib import Path

from meterseg.settings import Settings, TopicNames

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_diagram_names_every_topic_and_redis() -> None:
    diagram = README[README.index("```mermaid") : README.index("```", README.index("```mermaid") + 10)]
    missing = [t for t in TopicNames().model_dump().values() if t not in diagram]
    assert not missing, f"topics missing from the architecture diagram: {missing}"
    assert "Redis" in diagram


def test_every_named_path_exists() -> None:
    named = set(re.findall(r"`((?:meterseg|stream|processors|simulators|tests|bench|prometheus|grafana|docs|contracts|"
                            r"scripts|examples)/[\w./-]*)`", README))  # fmt: skip
    missing = sorted(p for p in named if not (REPO / p.rstrip("/")).exists())
    assert not missing, f"README names paths that do not exist: {missing}"


def test_configuration_variables_are_settings() -> None:
    table = README[README.index("## Configuration") : README.index("## Tests")]
    names = set(re.findall(r"`METERSEG_([A-Z0-9_]+)", table))
    fields = Settings.model_fields
    unknown = []
    for name in names:
        head = name.lower().split("__")[0].rstrip("_")
        if head not in fields and not any(head.startswith(f) for f in fields if f in ("topics", "stack", "ingest")):
            unknown.append(name)
    assert not unknown, f"configuration table names variables Settings does not read: {sorted(unknown)}"
