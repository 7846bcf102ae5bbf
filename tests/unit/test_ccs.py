"""CCS on planted contrast pairs and on a real MiniLM store of the bundled truth set."""

import numpy as np
import pytest

import actclust
from actclust.errors import ActclustError
from actclust.reporters import CCS, contrast_pairs


def planted_pairs(n=300, d=10, strength=3.0, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    base = rng.normal(size=(n, d)) * 2
    direction = rng.normal(size=d)
    direction *= strength / np.linalg.norm(direction)
    sign = (2 * truth - 1)[:, None]
    X_pos = base + sign * direction + rng.normal(size=(n, d))
    X_neg = base - sign * direction + rng.normal(size=(n, d))
    return np.hstack([X_pos, X_neg]), truth


def test_finds_a_planted_truth_direction_without_labels():
    X, truth = planted_pairs()
    ccs = CCS(n_tries=3, random_state=0, device="cpu").fit(X)
    assert ccs.accuracy(X, truth) > 0.9 and not ccs.degenerate_
    assert len(ccs.tries_) == 3 and ccs.loss_ == min(ccs.tries_)
    np.testing.assert_array_equal(ccs.labels_, ccs.predict(X))
    # accuracy is reported up to the sign CCS cannot know
    assert ccs.accuracy(X, 1 - truth) == ccs.accuracy(X, truth)


def test_no_signal_collapses_and_says_so():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 12))
    ccs = CCS(n_tries=2, random_state=0, device="cpu").fit(X)
    assert 0.5 <= ccs.accuracy(X, rng.integers(0, 2, 200)) < 0.6


def test_same_seed_same_direction():
    X, _ = planted_pairs(seed=2)
    a = CCS(n_tries=2, epochs=200, random_state=5, device="cpu").fit(X)
    b = CCS(n_tries=2, epochs=200, random_state=5, device="cpu").fit(X)
    np.testing.assert_allclose(a.coef_, b.coef_)


def test_bad_input():
    with pytest.raises(ActclustError, match="even number of columns, got 5"):
        CCS(device="cpu").fit(np.zeros((10, 5)))
    with pytest.raises(ActclustError, match="at least 2 pairs"):
        CCS(device="cpu").fit(np.zeros((1, 4)))


def test_truth_store_pairs_and_a_real_fit(tmp_path):
    store = actclust.capture("minilm", "truth", "blocks.5.hook_out", pool="last", limit=120,
                             out=tmp_path / "s", progress=False)
    X_pos, X_neg, y = contrast_pairs(store, "blocks.5.hook_out")
    assert X_pos.shape == X_neg.shape == (60, 384) and len(y) == 60
    rows = store.rows
    first_yes = rows.index[(rows.statement_id == rows.statement_id.iloc[0]) &
                           (rows.answer == "Yes")][0]
    np.testing.assert_array_equal(X_pos[0], store.layer("blocks.5.hook_out")[first_yes])
    ccs = CCS(n_tries=2, epochs=200, random_state=0, device="cpu").fit(np.hstack([X_pos, X_neg]))
    assert 0.5 <= ccs.accuracy(np.hstack([X_pos, X_neg]), y) <= 1.0
    tokens = actclust.capture("minilm", "truth", "blocks.5.hook_out", limit=4,
                              out=tmp_path / "t", progress=False)
    with pytest.raises(ActclustError, match="one row per document"):
        contrast_pairs(tokens, "blocks.5.hook_out")
    topics = actclust.capture("minilm", "topics", "blocks.5.hook_out", pool="mean", limit=4,
                              out=tmp_path / "u", progress=False)
    with pytest.raises(ActclustError, match="no 'statement_id' column"):
        contrast_pairs(topics, "blocks.5.hook_out")
