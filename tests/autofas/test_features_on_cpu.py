"""Feature fields: shapes, stable hashing, match features, and robustness to arbitrary text."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from taosr1_verl.autofas.features import FeatureConfig, FeatureExtractor, field_specs, price_limit
from taosr1_verl.data.pairs import Pair


def _pair(query: str, title: str, attrs: dict[str, str] | None = None, category: str = "sofa",
          price: float | None = 100.0, i: int = 0) -> Pair:
    return Pair(pair_id=f"q:{i}", index=i, query=query, title=title, attributes=attrs or {}, category=category,
                price=price)


FIT = [
    _pair("red sofa", "Nordvik red velvet sofa", {"colour": "red", "material": "velvet"}),
    _pair("blue table", "Oak blue table", {"colour": "blue", "material": "oak"}, "table", 300.0, 1),
]


def test_shapes_and_padding() -> None:
    cfg = FeatureConfig(n_buckets=512)
    ex = FeatureExtractor(cfg).fit(FIT)
    batch = ex.transform(FIT)
    for spec in field_specs(cfg):
        assert batch[spec.name].shape == (2, spec.size)
        if spec.kind == "bag":
            assert batch[spec.name].dtype == np.int64
            assert batch[spec.name].min() >= 0 and batch[spec.name].max() < cfg.n_buckets
        else:
            assert batch[spec.name].dtype == np.float32
    # "red sofa" has 2 unigrams + 1 bigram, the rest is padding.
    assert (batch["query_ngrams"][0] > 0).sum() == 3


def test_hashing_is_stable_and_subset_matches_full() -> None:
    ex = FeatureExtractor(FeatureConfig(n_buckets=512)).fit(FIT)
    full = ex.transform(FIT)
    again = FeatureExtractor.from_dict(ex.to_dict()).transform(FIT, fields=["title_ngrams", "price"])
    np.testing.assert_array_equal(full["title_ngrams"], again["title_ngrams"])
    np.testing.assert_allclose(full["price"], again["price"])
    assert list(again) == ["title_ngrams", "price"]


def test_attribute_conflict_and_price_limit() -> None:
    ex = FeatureExtractor(FeatureConfig(n_buckets=512)).fit(FIT)
    raw_ok = ex._dense([_pair("red sofa", "Nordvik sofa", {"colour": "red"})])["attr_match"][0]
    raw_bad = ex._dense([_pair("blue sofa", "Nordvik sofa", {"colour": "red"})])["attr_match"][0]
    assert raw_ok[0] == 1 and raw_ok[1] == 0  # "red" matches the item's colour
    assert raw_bad[0] == 0 and raw_bad[1] == 1  # "blue" is a colour, not this item's
    assert price_limit("sofa under $250") == 250.0 and price_limit("red sofa") is None
    within = ex._dense([_pair("sofa under $150", "sofa", price=100.0)])["price"][0]
    over = ex._dense([_pair("sofa under $50", "sofa", price=100.0)])["price"][0]
    assert within[2] == 1.0 and over[2] == 0.0


def test_unknown_field_is_rejected() -> None:
    ex = FeatureExtractor(FeatureConfig(n_buckets=512)).fit(FIT)
    try:
        ex.transform(FIT, fields=["nope"])
    except ValueError as e:
        assert "nope" in str(e)
    else:
        raise AssertionError("unknown field accepted")


@settings(max_examples=60, deadline=None)
@given(q=st.text(max_size=80), t=st.text(max_size=120),
       attrs=st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4),
       price=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
def test_any_text_gives_finite_features(q: str, t: str, attrs: dict[str, str], price: float | None) -> None:
    ex = FeatureExtractor(FeatureConfig(n_buckets=64)).fit(FIT)
    batch = ex.transform([_pair(q, t, attrs, price=price)])
    for name, arr in batch.items():
        assert np.isfinite(arr).all(), name
        if arr.dtype == np.int64:
            assert arr.min() >= 0 and arr.max() < 64
