"""Run the doctests of the simulators package (pytest's testpaths only cover tests/)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import simulators

MODULES = sorted(m.name for m in pkgutil.walk_packages(simulators.__path__, "simulators."))


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
