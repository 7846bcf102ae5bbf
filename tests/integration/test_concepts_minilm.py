"""Concept alignment on the real MiniLM store of the session (mean-pooled topics): the
clusters of early blocks line up with the sentence template, of the last with the topic."""

import pytest

from actclust.concepts import concept_table

pytestmark = pytest.mark.slow


def shares(store, layer):
    result = concept_table(store, layer, k=20, labels=["topic", "template"], n_novel=3)
    return result, result.summary.set_index("label")["aligned_share"]


def test_template_concepts_early_topic_concepts_late(minilm_topics):
    _, early = shares(minilm_topics, "blocks.0.hook_out")
    late_result, late = shares(minilm_topics, "blocks.5.hook_out")
    print(f"block 0: {early.to_dict()}  block 5: {late.to_dict()}")
    assert late["topic"] > early["topic"] + 0.2
    assert early["template"] > late["template"] + 0.2
    # pooled rows are whole documents: their examples are the documents' texts
    texts = set(minilm_topics.rows["text"])
    for examples in late_result.novel["examples"].head(3):
        assert examples and all(any(t.startswith(e.rstrip("…")) for t in texts)
                                for e in examples)
