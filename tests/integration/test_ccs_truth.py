"""CCS on a real MiniLM store of the bundled truth set: contrast pairs gathered from the
store, and a fit that finds a consistent direction (not the collapsed p = 0.5 solution).

At 60 pairs and 200 epochs CCS' accuracy on MiniLM's block 5 is near chance (0.53-0.58
over four seeds), so this test checks what CCS itself optimises, not accuracy.
"""

import numpy as np
import pytest

import actclust
from actclust.errors import ActclustError
from actclust.reporters import CCS, contrast_pairs

LAYER = "blocks.5.hook_out"


def test_truth_store_pairs_and_a_real_fit(tmp_path):
    store = actclust.capture("minilm", "truth", LAYER, pool="last", limit=120,
                             out=tmp_path / "s", progress=False)
    X_pos, X_neg, y = contrast_pairs(store, LAYER)
    assert X_pos.shape == X_neg.shape == (60, 384) and len(y) == 60
    rows = store.rows
    first_yes = rows.index[(rows.statement_id == rows.statement_id.iloc[0]) &
                           (rows.answer == "Yes")][0]
    np.testing.assert_array_equal(X_pos[0], store.layer(LAYER)[first_yes])
    X = np.hstack([X_pos, X_neg])
    ccs = CCS(n_tries=2, epochs=200, random_state=0, device="cpu").fit(X)
    # the collapsed solution (p = 0.5 for every statement) has loss 0.25
    assert ccs.loss_ == min(ccs.tries_) < 0.2 and not ccs.degenerate_
    truth = np.isin(np.char.lower(y.astype(str)), ["1", "true", "yes"])
    raw = float((ccs.predict(X).astype(bool) == truth).mean())
    assert ccs.accuracy(X, y) == pytest.approx(max(raw, 1 - raw))
    tokens = actclust.capture("minilm", "truth", LAYER, limit=4, out=tmp_path / "t",
                              progress=False)
    with pytest.raises(ActclustError, match="one row per document"):
        contrast_pairs(tokens, LAYER)
    topics = actclust.capture("minilm", "topics", LAYER, pool="mean", limit=4,
                              out=tmp_path / "u", progress=False)
    with pytest.raises(ActclustError, match="no 'statement_id' column"):
        contrast_pairs(topics, LAYER)
