"""The results table every stage reads and writes: one row per
(layer, method, label, metric, seed, value)."""

RESULT_COLUMNS = ["layer", "method", "label", "metric", "seed", "value"]

# The ``method`` of a linear probe's rows; reporters are named by their registry name.
PROBE_METHOD = "linear_probe"

# The ``method`` of the neighbour diagnostic's rows (``knn_purity``, one per layer and
# label): neither a reporter nor a probe.
NEIGHBOUR_METHOD = "knn"

# Methods whose rows are not a reporter's clusters.
NOT_REPORTERS = frozenset({PROBE_METHOD, NEIGHBOUR_METHOD})
