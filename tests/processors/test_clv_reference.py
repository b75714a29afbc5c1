"""processors.clv against the field's reference implementation (lifetimes) on the real CDNOW purchases.

CDNOW's BG/NBD fit has a = 0.48 < 1: the case where the engine used to clamp a to 1 (CLV a quarter
too low). Here the closed forms are evaluated with lifetimes' own parameters (so only the formulas are
compared) and the fits are compared parameter by parameter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from processors import clv

lifetimes = pytest.importorskip("lifetimes")  # the test extra; CI installs it
pd = pytest.importorskip("pandas")

CDNOW = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    df = pd.read_csv(CDNOW, sep=r"\s+", dtype={"customer_id": str, "date": str})
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return lifetimes.utils.summary_data_from_transaction_data(
        df, "customer_id", "date", monetary_value_col="dollar_value", freq="D"
    )


def test_bgnbd_closed_forms_equal_lifetimes_for_a_below_one(summary: pd.DataFrame) -> None:
    ref = lifetimes.BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    p = ref.params_
    assert p["a"] < 1  # the case under test
    params = clv.BgNbdParams(float(p["r"]), float(p["alpha"]), float(p["a"]), float(p["b"]))
    x, tx, t_ = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    ours = clv.expected_purchases(params, 90.0, x, tx, t_)
    theirs = ref.conditional_expected_number_of_purchases_up_to_time(90, x, tx, t_)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    np.testing.assert_allclose(clv.probability_alive(params, x, tx, t_),
                               ref.conditional_probability_alive(x, tx, t_), rtol=1e-9)  # fmt: skip
    assert ours.sum() == pytest.approx(float(np.sum(theirs)), rel=1e-9)


def test_fits_and_clv_equal_lifetimes(summary: pd.DataFrame) -> None:
    x, tx, t_, m = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T", "monetary_value"))
    model = clv.fit(x, tx, t_, m)
    bg = lifetimes.BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    for name in ("r", "alpha", "a", "b"):
        assert getattr(model.bgnbd, name) == pytest.approx(bg.params_[name], rel=1e-3), name
    rep = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    gg = lifetimes.GammaGammaFitter().fit(rep["frequency"], rep["monetary_value"])
    assert model.gamma_gamma is not None
    for name in ("p", "q", "v"):
        assert getattr(model.gamma_gamma, name) == pytest.approx(gg.params_[name], rel=1e-3), name
    ours = clv.clv(model, x, tx, t_, m, horizon_days=360.0, discount_rate=0.01)
    theirs = gg.customer_lifetime_value(bg, summary["frequency"], summary["recency"], summary["T"],
                                        summary["monetary_value"], time=12, discount_rate=0.01, freq="D")  # fmt: skip
    np.testing.assert_allclose(ours, theirs.to_numpy(), rtol=1e-2)
    assert ours.sum() == pytest.approx(float(theirs.sum()), rel=1e-3)
