"""See the clusters: plotly figures, the cluster dashboard and a self-contained HTML report.

Every figure function returns a plotly ``Figure`` (shown inline in Jupyter, saved with
``fig.write_html(path)``) and records what it shows in ``fig.layout.meta``. They read a store
(:class:`~actclust.ActivationStore`) and the tidy results table of
:func:`~actclust.compare.compare`.

* :func:`layer_map`: UMAP or PCA map of a layer, coloured by cluster and by a label.
* :func:`contingency_heatmap`: clusters x label values, matching on the diagonal.
* :func:`layer_sweep`: reporter scores against linear probes, layer by layer.
* :func:`training_curves`: a deep reporter's ``history_``.
* :func:`dendrogram`, :func:`explained_variance`, :func:`bic_curve`: Agglomerative, PCA, GMM.
* :func:`cluster_dashboard`: one page per cluster.
* :func:`explore`: a clickable map in Jupyter (``actclust[notebook]``).
* :func:`write_report`: all of it in one HTML file.

Example:
    >>> import numpy as np
    >>> from actclust.viz import layer_map
    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> layer_map(X, clusters=(X[:, 0] > 0).astype(int), method="pca").layout.meta["n_total"]
    50
"""

from .dashboard import ClusterDashboard, cluster_dashboard
from .explorer import Explorer, explore
from .figures import contingency_heatmap, layer_sweep
from .maps import MAX_POINTS, Embedding, embed, layer_map
from .report import write_report
from .reporter_figures import bic_curve, dendrogram, explained_variance, training_curves

__all__ = ["layer_map", "embed", "Embedding", "MAX_POINTS", "contingency_heatmap",
           "layer_sweep", "training_curves", "dendrogram", "explained_variance", "bic_curve",
           "cluster_dashboard", "ClusterDashboard", "write_report", "explore", "Explorer"]
