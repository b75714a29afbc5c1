"""Settings that take effect on restart: what changed between a checkpoint's config and the current one.

A partition's state is restored from its checkpoint, but its configuration comes from the settings the
worker starts with: thresholds, rates and limits follow at once. A few settings shape the state itself
(the open windows' sizes, the spike history's length); a checkpoint cannot follow a change of those, so the
restore refuses it with the setting named and what to do, instead of silently keeping the old value.

Examples:
    >>> changed_fields({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5, "d": 3}})
    ['b.c']
    >>> check_followable({"w": {"sizes": [900]}}, {"w": {"sizes": [900, 3600]}}, ("w.sizes",), "METERSEG_X__")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    processors.config_change.ConfigChangeError: METERSEG_X__W__SIZES changed from [900] to [900, 3600]: ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ConfigChangeError(ValueError):
    """A setting changed that the checkpointed state cannot follow."""


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two ``model_dump(mode="json")`` dictionaries."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += changed_fields(a, b, name + ".")
        elif a != b:
            out.append(name)
    return out


def _present(doc: Mapping[str, Any], dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return False
        doc = doc[part]
    return True


def _value(doc: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        doc = doc.get(part, {}) if isinstance(doc, Mapping) else {}
    return doc


def check_followable(
    old: Mapping[str, Any], new: Mapping[str, Any], frozen: Sequence[str], env_prefix: str
) -> list[str]:
    """The changed fields (for the log), or :class:`ConfigChangeError` naming those the state cannot follow."""
    changed = changed_fields(old, new)
    # a setting the checkpoint did not have (or the code no longer has) shaped none of the restored state:
    # its state starts afresh, so only a value present on both sides can be one the state cannot follow
    stuck = [f for f in changed if any(f == s or f.startswith(s + ".") for s in frozen)
             and _present(old, f) and _present(new, f)]
    if stuck:
        raise ConfigChangeError(
            "; ".join(
                f"{env_prefix}{f.upper().replace('.', '__')} changed from {_value(old, f)} to {_value(new, f)}"
                for f in stuck
            )
            + ": the checkpointed state is shaped by it and cannot follow. Either set it back, or start the "
            "app afresh with the new value (a new METERSEG_APP_ID, or its checkpoints deleted): its partitions "
            "then rebuild their state from the topics"
        )
    return changed
