"""Real purchases through the live engine equal the field's reference implementation (lifetimes).

The CDNOW purchases shipped with ``lifetimes`` (69 659 rows, 23 570 customers, 1997-01 to 1998-06, 215
exact duplicate lines that are real separate purchases) are imported with ``meterseg import
transactions`` into Kafka, processed by a live ``meterseg worker`` and read back customer by customer
through the HTTP API. lifetimes computes the same summary (``summary_data_from_transaction_data``,
daily periods, observation end = the last purchase day, which is also the engine's fleet clock), the
reference BG/NBD and Gamma-Gamma fits and every customer's expected purchases and CLV.

Then the defects of issue 14, each on the same live engine:

- the same file imported again under another name changes nothing (customers, purchase and revenue
  metrics);
- a purchase dated 2099 is dead-lettered ``in_future`` and moves no clock;
- every record on ``segment.changes`` has its own id;
- a customer silent for longer than the horizon (90 days) is in no active RFM segment.

Runs the full file: the import and its processing take well under a minute here, reading 23 570
customers through the API about as long again (more on a loaded machine). ``pytest -s`` prints the figures.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from meterseg.settings import Settings
from simulators.partition import partition_for
from tests.conftest import Services
from tests.integration.harness import metric_value, read_topic, running_worker, settings_env, wait_for

lifetimes = pytest.importorskip("lifetimes")
pd = pytest.importorskip("pandas")

pytestmark = pytest.mark.integration

CDNOW = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"
IMPORT_ARGS = ("--delimiter", "whitespace", "--customer-col", "customer_id", "--date-col", "date",
               "--amount-col", "dollar_value", "--quantity-col", "number_of_cds", "--date-format", "%Y%m%d")  # fmt: skip
TOKEN = "cdnow-reference-token"
ACTIVE = {"champions", "loyal", "potential_loyalist", "new_customers", "promising", "need_attention",
          "about_to_sleep"}  # fmt: skip


def reference() -> dict[str, Any]:
    """lifetimes' summary, fits, expected purchases (90 days) and CLV (12 x 30 days, 1 % per period)."""
    df = pd.read_csv(CDNOW, sep=r"\s+", dtype={"customer_id": str, "date": str})
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    s = lifetimes.utils.summary_data_from_transaction_data(
        df, "customer_id", "date", monetary_value_col="dollar_value", freq="D"
    )
    bg = lifetimes.BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    rep = s[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
    gg = lifetimes.GammaGammaFitter().fit(rep["frequency"], rep["monetary_value"])
    s["expected_90d"] = bg.conditional_expected_number_of_purchases_up_to_time(90, s["frequency"], s["recency"], s["T"])
    s["clv"] = gg.customer_lifetime_value(bg, s["frequency"], s["recency"], s["T"], s["monetary_value"], time=12,
                                          discount_rate=0.01, freq="D")  # fmt: skip
    return {"summary": s, "bgnbd": dict(bg.params_), "gamma_gamma": dict(gg.params_), "rows": len(df)}


def run_import(settings: Settings, path: Path, out: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "meterseg.cli", "import", "transactions", str(path), *IMPORT_ARGS, "--no-progress",
         "--out", str(out)],
        env=settings_env(settings), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


class Api:
    """Keep-alive HTTP connections, one per thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._conns: dict[int, http.client.HTTPConnection] = {}

    def get(self, path: str) -> tuple[int, Any]:
        import threading

        key = threading.get_ident()
        conn = self._conns.get(key)
        if conn is None:
            conn = self._conns[key] = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())


def customers_through_api(api: Api, ids: list[str]) -> dict[str, dict[str, Any]]:
    def one(cid: str) -> tuple[str, dict[str, Any]]:
        status, body = api.get(f"/customers/{cid}")
        assert status == 200, (cid, status, body)
        return cid, body

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, ids))


@pytest.fixture(scope="module")
def cdnow_run(tmp_path_factory: pytest.TempPathFactory, services: Services) -> dict[str, Any]:
    import uuid

    from meterseg.settings import TopicNames
    from tests.conftest import local_test_settings

    out = tmp_path_factory.mktemp("cdnow")
    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        app_id=f"cdnow-{unique}",
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=services.redis_url.rsplit("/", 1)[0] + "/14",
        topics=TopicNames(**{k: f"{v}.{unique}" for k, v in TopicNames().model_dump().items()}),
        stack=local_test_settings().stack,
    )
    ref = reference()
    env = {"METERSEG_API_TOKEN": TOKEN, "METERSEG_SEGMENTATION__EXCHANGE_INTERVAL_S": "1"}
    result: dict[str, Any] = {"settings": settings, "reference": ref}
    with running_worker(settings, out, **env) as worker:
        api = Api(worker.web_port)
        rc, text, import_s = run_import(settings, CDNOW, out / "first")
        assert rc == 0, text
        assert f"rows read {ref['rows']:,}, published {ref['rows']:,}, rejected 0" in text, text
        started = time.monotonic()
        wait_for(lambda: worker.health().get("segmentation", {}).get("messages", 0) >= ref["rows"], 300,
                 "every purchase processed")  # fmt: skip
        processed_s = time.monotonic() - started

        def clock_at_end() -> bool:
            status, body = api.get(f"/customers/{ref['summary'].index[0]}")
            return status == 200 and (body.get("rfm") or {}).get("as_of", "").startswith("1998-06-30")

        wait_for(clock_at_end, 60, "the fleet clock at the last purchase day")
        # the API ages customers by the fleet clock at once; each partition rescores at its next tick after the
        # clock exchange (later while it checkpoints): wait until a customer silent past the horizon has left
        # the active segments in every partition, so the reads below see the engine settled at the end
        s = ref["summary"]
        silent_of: dict[int, str] = {}
        for cid in s.index[(s["T"] - s["recency"]) > 90]:
            silent_of.setdefault(partition_for(str(cid).encode(), settings.partitions), str(cid))

        def rescored_at_end() -> bool:
            return all(api.get(f"/customers/{cid}")[1]["rfm"]["segment"] not in ACTIVE for cid in silent_of.values())

        wait_for(rescored_at_end, 60, "every partition rescored at the last purchase day")
        status, _ = api.get("/customers?limit=1")  # reads the population: fits the CLV model on every customer
        assert status == 200
        started = time.monotonic()
        result["api"] = customers_through_api(api, list(ref["summary"].index))
        result["timing"] = {"import_s": import_s, "processed_after_import_s": processed_s,
                            "api_read_s": time.monotonic() - started}  # fmt: skip
        metrics = worker.metrics()
        result["metrics_before"] = {
            "purchases": metric_value(metrics, "meterseg_purchases_applied_total"),
            "revenue": metric_value(metrics, "meterseg_purchase_revenue_total"),
            "customers": metric_value(metrics, "meterseg_customers"),
        }

        # --- the same file under another name: nothing changes
        renamed = out / "cdnow-export-renamed.dat"
        shutil.copy(CDNOW, renamed)
        rc, text, _ = run_import(settings, renamed, out / "second")
        assert rc == 0, text
        wait_for(lambda: worker.health().get("segmentation", {}).get("messages", 0) >= 2 * ref["rows"], 300,
                 "the re-import processed")  # fmt: skip
        time.sleep(3)  # a gauge refresh (exchange interval 1 s)
        metrics = worker.metrics()
        result["metrics_after"] = {
            "purchases": metric_value(metrics, "meterseg_purchases_applied_total"),
            "revenue": metric_value(metrics, "meterseg_purchase_revenue_total"),
            "customers": metric_value(metrics, "meterseg_customers"),
        }
        sample = list(ref["summary"].index[::97])
        result["api_after_reimport"] = customers_through_api(api, sample)

        # --- a purchase dated 2099 for a known customer
        future = out / "future.txt"
        future.write_text("customer_id date number_of_cds dollar_value\n00003 20990101 1 10.00\n")
        rc, text, _ = run_import(settings, future, out / "future")
        assert rc == 0, text
        wait_for(lambda: worker.health().get("segmentation", {}).get("deadletter", 0) >= 1, 120,
                 "the 2099 purchase dead-lettered")  # fmt: skip
        time.sleep(3)
        result["after_future"] = customers_through_api(api, ["00003", *sample[:20]])
        result["deadletter"] = read_topic(settings.kafka_bootstrap, settings.topics.deadletter)
        result["changes"] = [json.loads(v) for _, v, _ in read_topic(settings.kafka_bootstrap,
                                                                     settings.topics.segment_changes)]  # fmt: skip
    print(f"\nCDNOW: import {result['timing']['import_s']:.1f} s, processing done "
          f"{result['timing']['processed_after_import_s']:.1f} s after, API read of "
          f"{len(result['api']):,} customers {result['timing']['api_read_s']:.1f} s")  # fmt: skip
    return result


def _compare(run: dict[str, Any]) -> dict[str, Any]:
    s = run["reference"]["summary"]
    api = run["api"]
    rfm = {cid: api[cid]["rfm"] for cid in s.index}
    value = {cid: api[cid]["value"] for cid in s.index}
    out: dict[str, Any] = {}
    for ours, theirs in (("frequency", "frequency"), ("recency_days", "recency"), ("T_days", "T")):
        got = np.array([rfm[c][ours] for c in s.index], dtype=float)
        out[theirs] = float(np.mean(got == s[theirs].to_numpy()))
    got = np.array([rfm[c]["monetary_value"] for c in s.index], dtype=float)
    out["monetary_value"] = float(np.mean(np.isclose(got, s["monetary_value"].to_numpy(), rtol=1e-9, atol=1e-9)))
    model = next(iter(value.values()))["model"]
    out["bgnbd"] = {k: model["bgnbd"][k] / v - 1 for k, v in run["reference"]["bgnbd"].items()}
    out["gamma_gamma"] = {k: model["gamma_gamma"][k] / v - 1 for k, v in run["reference"]["gamma_gamma"].items()}
    e90 = np.array([value[c]["expected_purchases_90d"] for c in s.index], dtype=float)
    clv = np.array([value[c]["clv"] for c in s.index], dtype=float)
    # the API rounds (3 decimals for expected purchases, cents for CLV): within 1 % or within that rounding
    out["expected_90d_within_1pct"] = float(np.mean(np.isclose(e90, s["expected_90d"], rtol=0.01, atol=5e-4)))
    out["clv_within_1pct"] = float(np.mean(np.isclose(clv, s["clv"], rtol=0.01, atol=5e-3)))
    out["expected_90d_total"] = (float(e90.sum()), float(s["expected_90d"].sum()))
    out["clv_total"] = (float(clv.sum()), float(s["clv"].sum()))
    return out


def test_every_customer_equals_lifetimes(cdnow_run: dict[str, Any]) -> None:
    figures = _compare(cdnow_run)
    print("\nCDNOW vs lifetimes:", json.dumps(figures, indent=1))
    for field in ("frequency", "recency", "T", "monetary_value"):
        assert figures[field] == 1.0, (field, figures[field])
    for name, err in {**figures["bgnbd"], **figures["gamma_gamma"]}.items():
        assert abs(err) < 0.01, (name, err)
    assert figures["expected_90d_within_1pct"] == 1.0
    assert figures["clv_within_1pct"] == 1.0


def test_reimport_under_another_name_changes_nothing(cdnow_run: dict[str, Any]) -> None:
    assert cdnow_run["metrics_after"] == cdnow_run["metrics_before"]
    assert cdnow_run["metrics_before"]["customers"] == len(cdnow_run["reference"]["summary"])
    for cid, body in cdnow_run["api_after_reimport"].items():
        before, after = cdnow_run["api"][cid]["rfm"], body["rfm"]
        assert (after["n_purchases"], after["total_spend"], after["frequency"]) == (
            before["n_purchases"], before["total_spend"], before["frequency"]), cid


def test_a_purchase_dated_2099_is_dead_lettered_and_moves_no_clock(cdnow_run: dict[str, Any]) -> None:
    reasons = [dict(h).get("reason") for _, _, h in cdnow_run["deadletter"]]
    assert reasons == [b"in_future"], reasons
    for cid, body in cdnow_run["after_future"].items():
        assert body["rfm"]["as_of"].startswith("1998-06-30"), (cid, body["rfm"]["as_of"])
        assert body["rfm"]["T_days"] == cdnow_run["api"][cid]["rfm"]["T_days"], cid
    assert cdnow_run["after_future"]["00003"]["rfm"]["last_purchase"] == cdnow_run["api"]["00003"]["rfm"][
        "last_purchase"]


def test_every_segment_change_has_its_own_id(cdnow_run: dict[str, Any]) -> None:
    ids = [c["change_id"] for c in cdnow_run["changes"]]
    assert len(ids) > len(cdnow_run["reference"]["summary"])
    assert len(set(ids)) == len(ids)


def test_silent_customers_are_in_no_active_segment(cdnow_run: dict[str, Any]) -> None:
    """Silent past the horizon at the last purchase day, the clock every partition rescored at (the fixture
    waits for it), not at read time: once quiet the event clock runs on, and a customer whose last purchase
    was exactly 90 days before crosses the horizon during the reads, a tick before its partition rescores."""
    end = datetime(1998, 6, 30, tzinfo=UTC)
    silent = active_silent = 0
    for body in cdnow_run["api"].values():
        rfm = body["rfm"]
        if end - datetime.fromisoformat(rfm["last_purchase"].replace("Z", "+00:00")) > timedelta(days=90):
            silent += 1
            active_silent += rfm["segment"] in ACTIVE
    assert silent > 10_000 and active_silent == 0
