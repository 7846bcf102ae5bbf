"""The results table every stage reads and writes: one row per
(layer, method, label, metric, seed, value)."""

RESULT_COLUMNS = ["layer", "method", "label", "metric", "seed", "value"]

# The ``method`` of a linear probe's rows; reporters are named by their registry name.
PROBE_METHOD = "linear_probe"
