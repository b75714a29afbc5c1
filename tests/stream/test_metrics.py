"""``observe_many`` must leave a histogram exactly as one ``observe`` per value would."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from stream.metrics import observe_many

_BUCKETS = (0.005, 0.01, 0.1, 1.0, 5.0, 60.0)


def _samples(h: Histogram) -> list[tuple[str, str | None, float]]:
    return [(s.name, s.labels.get("le"), s.value) for s in h.collect()[0].samples if not s.name.endswith("_created")]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([*_BUCKETS, 0.0, -1.0, math.inf]),  # values on a bound go to that bound's bucket
            st.floats(min_value=-10, max_value=1e4, allow_nan=False),
        ),
        max_size=60,
    )
)
def test_observe_many_equals_one_observe_per_value(values: list[float]) -> None:
    one = Histogram("one_seconds", "x", ["source"], buckets=_BUCKETS, registry=CollectorRegistry())
    many = Histogram("many_seconds", "x", ["source"], buckets=_BUCKETS, registry=CollectorRegistry())
    child = one.labels("a")
    for v in values:
        child.observe(v)
    observe_many(many.labels("a"), values)
    got = [(n.replace("many", "one"), le, v) for n, le, v in _samples(many)]
    want = _samples(one)
    assert [(n, le) for n, le, _ in got] == [(n, le) for n, le, _ in want]
    for (_, _, g), (_, _, w) in zip(got, want, strict=True):
        assert g == w or math.isclose(g, w, rel_tol=1e-12, abs_tol=1e-9)


def test_observe_many_skips_nan_and_empty() -> None:
    h = Histogram("h_seconds", "x", buckets=_BUCKETS, registry=CollectorRegistry())
    observe_many(h, [])
    observe_many(h, [math.nan, 0.5])
    count = next(s.value for s in h.collect()[0].samples if s.name == "h_seconds_count")
    total = next(s.value for s in h.collect()[0].samples if s.name == "h_seconds_sum")
    assert (count, total) == (1.0, 0.5)
