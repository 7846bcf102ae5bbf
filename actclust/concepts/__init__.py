"""Concept alignment: over-cluster a layer, then ask which clusters are human concepts.

After ConceptX (Dalvi et al. 2022, "Discovering Latent Concepts Learned in BERT"; code
``hsajjad/ConceptX``): a layer's token rows are clustered into many more groups than any
label has values, and a group is *aligned* with a label column when at least ``theta``
(0.9) of its labelled rows carry one value of it and at most ``max_unknown`` (0.4) of its
rows have no known value. Groups aligned with no label are *candidate novel features*,
ranked by how coherent they are without labels (:func:`coherence`) and shown in context.

Groups are clusters (one id per row) or any row sets, such as the top-activating rows of
a sparse autoencoder's latents (a list or dict of index arrays, which may overlap).

Example:
    >>> import numpy as np, pandas as pd
    >>> rows = pd.DataFrame({"pos": ["NOUN"] * 10 + ["VERB", "NOUN"] * 5})
    >>> table = align(np.repeat([0, 1], 10), rows)
    >>> table[["group", "value", "precision", "aligned"]].values.tolist()
    [[0, 'NOUN', 1.0, True], [1, 'NOUN', 0.5, False]]
    >>> summarise(table)[["label", "aligned_share"]].values.tolist()
    [['pos', 0.5], ['any', 0.5]]
"""

from ._align import (ALIGN_COLUMNS, ANY_LABEL, UNKNOWN_VALUES, align, choose_label_columns,
                     summarise, to_results, unknown_mask)
from ._features import feature_groups, feature_scores, is_feature_reporter
from ._novel import coherence, examples, in_context, novel_candidates
from ._table import ConceptResult, concept_table

__all__ = ["align", "summarise", "to_results", "choose_label_columns", "unknown_mask",
           "coherence", "novel_candidates", "examples", "in_context",
           "concept_table", "ConceptResult", "feature_scores", "is_feature_reporter",
           "feature_groups", "ALIGN_COLUMNS", "ANY_LABEL", "UNKNOWN_VALUES"]
