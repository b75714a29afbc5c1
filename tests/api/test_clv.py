"""BG/NBD + Gamma-Gamma: parameters recovered from data simulated from the models themselves."""

from __future__ import annotations

import numpy as np
import pytest

from processors import clv


def test_bgnbd_recovers_simulated_parameters() -> None:
    true = clv.BgNbdParams(r=0.4, alpha=8.0, a=1.2, b=3.0)
    T = np.random.default_rng(1).uniform(60, 365, 5000).round()
    x, tx, T = clv.simulate_bgnbd(true, T, seed=2)
    fitted = clv.fit_bgnbd(x, tx, T)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fitted, name) == pytest.approx(getattr(true, name), rel=0.2), name
    # the fitted model predicts the holdout-free total: E[purchases in (0, T]] for new customers ~ observed mean
    ll_true = clv.bgnbd_log_likelihood(true, x, tx, T).sum()
    ll_fit = clv.bgnbd_log_likelihood(fitted, x, tx, T).sum()
    assert ll_fit >= ll_true - 1e-6  # MLE is at least as likely as the truth


def test_weighted_fit_equals_row_fit() -> None:
    true = clv.BgNbdParams(r=0.6, alpha=12.0, a=0.9, b=2.0)
    T = np.full(3000, 180.0)
    x, tx, T = clv.simulate_bgnbd(true, T, seed=5)
    tx = np.ceil(tx)  # day resolution, as in the RFM summary: many identical rows
    model = clv.fit(x, tx, T, np.full_like(x, 20.0))
    plain = clv.fit_bgnbd(x, tx, T)
    assert model.bgnbd.r == pytest.approx(plain.r, rel=0.02)
    assert model.bgnbd.b == pytest.approx(plain.b, rel=0.02)


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(7)
    p, q, v = 6.0, 4.0, 15.0
    n = 4000
    x = rng.integers(1, 12, n).astype(float)
    nu = rng.gamma(q, 1.0 / v, n)
    m = np.array([rng.gamma(p, 1.0 / nu_i, int(k)).mean() for nu_i, k in zip(nu, x, strict=True)])
    fitted = clv.fit_gamma_gamma(x, m)
    assert fitted.p == pytest.approx(p, rel=0.2)
    assert fitted.q == pytest.approx(q, rel=0.25)
    assert fitted.v == pytest.approx(v, rel=0.3)
    # population mean spend p*v/(q-1) recovered
    assert fitted.p * fitted.v / (fitted.q - 1) == pytest.approx(p * v / (q - 1), rel=0.05)


def test_p_alive_churn_and_clv_behave() -> None:
    model = clv.ClvModel(clv.BgNbdParams(0.5, 10.0, 0.8, 2.5), clv.GammaGammaParams(6.0, 4.0, 15.0), 10, 5)
    recent = clv.customer_value(model, {"frequency": 8, "recency_days": 170, "T_days": 180, "monetary_mean": 50})
    gone = clv.customer_value(model, {"frequency": 8, "recency_days": 20, "T_days": 180, "monetary_mean": 50})
    new = clv.customer_value(model, {"frequency": 0, "recency_days": 0, "T_days": 10, "monetary_mean": 50})
    assert recent["churn.probability"] < 0.2 < 0.9 < gone["churn.probability"]
    assert new["churn.probability"] == 0.0  # BG/NBD: no repeat purchase, no evidence of dropout
    assert recent["clv"] > gone["clv"] >= 0
    longer = clv.clv(model, [8], [170], [180], [50], horizon_days=730)[0]
    assert longer > recent["clv"]
    undiscounted = clv.clv(model, [8], [170], [180], [50], horizon_days=365, discount_rate=0.0)[0]
    assert undiscounted > recent["clv"]
    assert clv.ClvModel.from_json(model.to_json()) == model


def test_fit_refuses_inconsistent_summaries() -> None:
    with pytest.raises(ValueError):
        clv.fit_bgnbd([1.0], [10.0], [5.0])  # recency beyond T
    with pytest.raises(ValueError):
        clv.fit_bgnbd([], [], [])
