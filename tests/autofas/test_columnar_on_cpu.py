"""The vectorised extraction gives the reference's arrays, bit for bit: whole batches, requests against a
precomputed catalog, and the tokeniser and hash on their own, on synthetic and hypothesis-generated text."""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taosr1_verl.autofas.columnar import Ragged, crc32_strings, hash_ids, tokenize
from taosr1_verl.autofas.features import FeatureConfig, FeatureExtractor, words
from taosr1_verl.data.pairs import Pair
from taosr1_verl.data.synth import generate_synthetic

# Characters that steer the tokeniser's edge cases: decimals, plurals, U+0130 (lower-cases to two code
# points), the Kelvin sign (lower-cases to ASCII k), separators the tokens are joined with.
EDGY = st.sampled_from(list("ab sS.012 9-\u0130\u212aé#_|=\n\t$<") + ["under ", "without ", "not ", "sofas", "2.5"])
TEXT = st.one_of(st.text(max_size=40), st.lists(EDGY, max_size=12).map("".join))


def _assert_same(ex: FeatureExtractor, pairs: list[Pair], fields: list[str] | None = None) -> None:
    got, want = ex.transform(pairs, fields), ex.transform_reference(pairs, fields)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.fixture(scope="module")
def synthetic() -> tuple[FeatureExtractor, list[Pair]]:
    pairs = generate_synthetic(600, seed=3)
    return FeatureExtractor(FeatureConfig(n_buckets=1 << 12)).fit(pairs[:400]), pairs


def test_batch_equals_reference_on_the_synthetic_catalog(synthetic) -> None:
    ex, pairs = synthetic
    _assert_same(ex, pairs)
    _assert_same(ex, pairs[:37], ["price", "title_chargrams", "attr_match"])


def test_request_against_a_precomputed_catalog_equals_reference(synthetic) -> None:
    ex, pairs = synthetic
    catalog = ex.catalog(pairs)
    rng = np.random.default_rng(0)
    for query in ("blue velvet sofa without leather", pairs[5].query, "zzz", ""):
        rows = rng.choice(len(pairs), size=50, replace=False)
        cands = [Pair(pair_id=f"r{i}", index=i, query=query, title=pairs[i].title, attributes=pairs[i].attributes,
                      category=pairs[i].category, price=pairs[i].price) for i in rows]
        got = ex.request(query, catalog, rows)
        want = ex.transform_reference(cands)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{query!r} {name}")
    # A catalog built for a few fields serves those fields, and says so for the others.
    small = ex.catalog(pairs, fields=["price", "category_id"])
    assert set(ex.request("sofa", small, np.arange(3), ["price", "category_id"])) == {"price", "category_id"}
    with pytest.raises(ValueError, match="title_ngrams"):
        ex.request("sofa", small, np.arange(3), ["title_ngrams"])


def _pairs(data: st.DataObject) -> list[Pair]:
    queries = data.draw(st.lists(TEXT, min_size=1, max_size=3))
    n = data.draw(st.integers(1, 6))
    out = []
    for i in range(n):
        out.append(Pair(
            pair_id=f"p{i}", index=i, query=data.draw(st.sampled_from(queries)), title=data.draw(TEXT),
            attributes=data.draw(st.dictionaries(TEXT, TEXT, max_size=3)), category=data.draw(TEXT),
            price=data.draw(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                                      st.floats(0, 1e4)))))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_text_gives_the_reference_arrays(data: st.DataObject) -> None:
    fit = _pairs(data)
    pairs = _pairs(data) + fit[:2]
    ex = FeatureExtractor(FeatureConfig(n_buckets=64, max_query_ngrams=4, max_title_ngrams=5, max_title_chargrams=7,
                                        max_attr_tokens=4, max_cross=3)).fit(fit)
    _assert_same(ex, pairs)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(TEXT, max_size=8))
def test_tokenize_is_words(texts: list[str]) -> None:
    tok = tokenize(pa.array(texts, pa.large_string()))
    strings = tok.strings().to_pylist()
    got = [strings[tok.offsets[i] : tok.offsets[i + 1]] for i in range(len(texts))]
    assert got == [words(t) for t in texts]


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.text(max_size=30), max_size=10), salt=st.text(max_size=5))
def test_crc32_and_hash_ids_are_zlibs(texts: list[str], salt: str) -> None:
    prefix = f"{salt}\x1f".encode()
    # Few strings are hashed one by one, many by byte position: both paths.
    for batch in (texts, [f"{t}{i}" for i, t in enumerate(texts * 20)] + ["x"] * 70):
        crcs = crc32_strings(pa.array(batch, pa.large_string()), prefix)
        assert crcs.tolist() == [zlib.crc32(prefix + t.encode()) for t in batch]
    ids = hash_ids(pa.array(texts, pa.large_string()), salt, 97)
    assert ids.tolist() == [zlib.crc32(prefix + t.encode()) % 96 + 1 for t in texts]


def test_ragged_take_gathers_rows_in_order() -> None:
    r = Ragged(np.arange(10), np.array([0, 3, 3, 7, 10]))
    t = r.take(np.array([3, 1, 0, 3]))
    assert t.offsets.tolist() == [0, 3, 3, 6, 9]
    assert t.values.tolist() == [7, 8, 9, 0, 1, 2, 7, 8, 9]
    assert t.row_ids().tolist() == [0, 0, 0, 2, 2, 2, 3, 3, 3]


def test_absurd_price_limit_is_the_ratio_floor() -> None:
    """A limit beyond float range used to raise in math.log; both paths floor the ratio instead."""
    p = Pair(pair_id="a", index=0, query="sofa under " + "9" * 400, title="sofa", price=10.0)
    ex = FeatureExtractor(FeatureConfig(n_buckets=64)).fit([p])
    assert ex._dense([p])["price"][0].tolist() == [np.float32(np.log1p(10.0)), 1.0, 1.0, -3.0]
    _assert_same(ex, [p])
