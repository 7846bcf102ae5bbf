"""CCS on planted contrast pairs, and contrast pairs gathered from a store's row table
(a real MiniLM store of the bundled truth set: tests/integration/test_ccs_truth.py)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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


def test_no_signal_gives_chance_accuracy():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 12))
    ccs = CCS(n_tries=2, random_state=0, device="cpu").fit(X)
    assert 0.5 <= ccs.accuracy(X, rng.integers(0, 2, 200)) < 0.6


def test_accuracy_is_the_better_of_the_two_signs():
    X, truth = planted_pairs(n=100, strength=0.5, seed=4)
    ccs = CCS(n_tries=1, epochs=50, random_state=0, device="cpu").fit(X)
    raw = float((ccs.predict(X) == truth).mean())
    assert ccs.accuracy(X, truth) == max(raw, 1 - raw)
    # labels given as text count "yes"/"true"/"1" as true, anything else as false
    words = np.where(truth == 1, "Yes", "No")
    assert ccs.accuracy(X, words) == ccs.accuracy(X, truth)


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


class PairStore:
    """What :func:`contrast_pairs` reads from a store: a row table and one layer."""

    def __init__(self, rows: pd.DataFrame, X: np.ndarray):
        self.rows, self.X, self.root = rows, X, Path("pairs")

    def layer(self, name):
        X = self.X

        class View:
            def to_numpy(self):
                return X
        return View()


def pair_rows(statements=(0, 1, 2)):
    """Both sides of each statement, in shuffled order: id, answer, truth."""
    rows = pd.DataFrame([{"statement_id": s, "answer": a, "truth": "true" if s % 2 else "false"}
                         for s in statements for a in ("No", "Yes")])
    return rows.sample(frac=1, random_state=0).reset_index(drop=True)


def test_contrast_pairs_align_both_sides_of_every_statement():
    rows = pair_rows()
    X = np.arange(len(rows) * 2, dtype=np.float32).reshape(len(rows), 2)
    X_pos, X_neg, y = contrast_pairs(PairStore(rows, X), "layer")
    for i, statement in enumerate((0, 1, 2)):
        yes = rows.index[(rows.statement_id == statement) & (rows.answer == "Yes")][0]
        no = rows.index[(rows.statement_id == statement) & (rows.answer == "No")][0]
        np.testing.assert_array_equal(X_pos[i], X[yes])
        np.testing.assert_array_equal(X_neg[i], X[no])
    assert y.tolist() == ["false", "true", "false"]


def test_contrast_pairs_refuse_stores_that_hold_no_pairs():
    rows = pair_rows()
    X = np.zeros((len(rows), 2), np.float32)
    with pytest.raises(ActclustError, match="no 'statement_id' column"):
        contrast_pairs(PairStore(rows.drop(columns="statement_id"), X), "layer")
    with pytest.raises(ActclustError, match="one row per document"):
        contrast_pairs(PairStore(rows.assign(token="a"), X), "layer")
    lonely = rows.drop(index=rows.index[(rows.statement_id == 1) & (rows.answer == "No")])
    with pytest.raises(ActclustError, match="pairs are incomplete"):
        contrast_pairs(PairStore(lonely.reset_index(drop=True), X[:-1]), "layer")
