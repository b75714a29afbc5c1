"""Behaviour segments on real load profiles through the live worker (CI size of ``bench/realdata_segments.py``).

A fleet following the BDEW standard profiles and richardsonpy households (``meterseg simulate
--profiles real``) streams into Kafka as column blocks, paced, while a real ``meterseg worker``
with default settings segments it. Reduced: 500 meters x 21 days (the bench: 3 000 x 28). Gates,
against a batch k-means++ ceiling on the worker's own checkpointed features of the same run:

* NMI and purity against the customer families >= 0.9 x the ceiling (the bench's full-size target
  is 0.95; at 500 customers one segment more or less moves the figures by several points);
* calm: no drift event on this stationary fleet, nobody returning within a week to a segment it left
  after the warm-up (two weeks), and names that stay put: no segment renamed after the warm-up.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from typing import Any

import pytest

from bench.realdata_segments import Outcome, calm, live_run, parser, quality
from meterseg.settings import Settings
from tests.conftest import Services, local_test_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

METERS = 500 if os.environ.get("CI") else 800
DAYS = 21
WARMUP = 14


@pytest.fixture(scope="module")
def run(services: Services, tmp_path_factory: pytest.TempPathFactory) -> tuple[Outcome, Any]:
    args = parser().parse_args(["--meters", str(METERS), "--days", str(DAYS), "--seed", "2", "--speed", "17280",
                                "--warmup-days", str(WARMUP)])
    base = Settings(app_id=f"realseg-{uuid.uuid4().hex[:6]}", kafka_bootstrap=services.kafka_bootstrap,
                    redis_url=services.redis_url.rsplit("/", 1)[0] + "/14", stack=local_test_settings().stack)
    return live_run(args, base), args


def test_segments_reach_the_batch_ceiling_on_families(run: tuple[Outcome, Any]) -> None:
    o, _ = run
    assert len(o.members) >= 0.95 * len(o.families)  # everyone with profiles has a behaviour segment
    _, nmi, pur, _ = quality(o.families, o.members)
    _, c_nmi, c_pur, _ = quality(o.families, o.ceiling_labels)
    assert nmi >= 0.9 * c_nmi, (nmi, c_nmi)
    assert pur >= 0.9 * c_pur, (pur, c_pur)


def test_calm_on_a_stationary_fleet(run: tuple[Outcome, Any]) -> None:
    o, args = run
    c = calm(o, args.warmup_days)
    assert c["drift"] == []
    # no customer returns within a week to a segment it left (the assigner holds every segment left within
    # the dwell, restart or not)
    assert c["returns"] == 0, c["returns"]
    after = (o.start + timedelta(days=WARMUP)).isoformat()
    late = [e for e in c["renames"] if e["detail"]["profile_day"] >= after]
    assert late == []


def test_segments_are_named_in_units(run: tuple[Outcome, Any]) -> None:
    o, _ = run
    names = [e["name"] for e in o.catalogue.values() if e.get("family") == "behaviour"]
    assert names and all("kWh a day" in n or n.startswith("small segment") for n in names), names
