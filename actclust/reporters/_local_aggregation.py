"""The numeric core of Local Aggregation: the two losses, the close-neighbour mask, the
memory bank and its k-means runs. The estimator is in ``local_aggregation.py``."""

from __future__ import annotations

import math
import warnings

import numpy as np

# The authors clamp each row's relative probability at 1e-7 before the log
# (``torch.log(relative_probs + 1e-7)``): a row with no close neighbour in its background
# costs at most -log 1e-7 and gives no gradient.
MIN_LOG_RATIO = math.log(1e-7)


def la_loss(dots, close, temperature: float = 0.07):
    """Local Aggregation's loss of each row:
    ``-log( sum_{C & B} exp(v.v_j / t) / sum_B exp(v.v_j / t) )``.

    ``dots`` (rows x k) are the dot products of each row's embedding with its background
    neighbours ``B`` in the memory bank, ``close`` (rows x k, boolean) marks those that are
    also close neighbours ``C``. Computed with log-sum-exp; the log ratio is clamped at
    log 1e-7, as the authors clamp it. Returns one loss per row.

    Example:
        >>> import torch
        >>> dots = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
        >>> close = torch.tensor([[True, True, False, False]])
        >>> round(la_loss(dots, close, temperature=1.0).item(), 4)  # -log(2e / (2e + 2))
        0.3133
    """
    import torch

    logits = dots / temperature
    inside = torch.logsumexp(logits.masked_fill(~close, -torch.inf), 1)
    return -(inside - torch.logsumexp(logits, 1)).clamp(min=MIN_LOG_RATIO)


def instance_loss(all_dots, idx, temperature: float = 0.07):
    """Instance discrimination (Wu et al. 2018), the warm start the authors train before
    Local Aggregation: ``-log softmax(v.bank / t)[i]`` for each row ``i`` over the whole
    memory bank (LA's loss with ``B`` the whole bank and ``C`` the row alone). Returns one
    loss per row.

    Example:
        >>> import torch
        >>> round(instance_loss(torch.zeros(2, 4), torch.tensor([0, 3])).mean().item(), 4)
        1.3863
    """
    import torch

    return torch.nn.functional.cross_entropy(all_dots / temperature, idx, reduction="none")


def close_in_background(cluster_labels, idx, background):
    """Which background neighbours are close neighbours: rows that share a cluster with
    the anchor in *any* of the k-means runs. ``cluster_labels`` is runs x bank rows,
    ``idx`` the anchors' bank rows, ``background`` their neighbours (rows x k).

    Example:
        >>> import torch
        >>> labels = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 0]])  # two runs, four rows
        >>> close_in_background(labels, torch.tensor([0]), torch.tensor([[1, 2, 3]]))
        tensor([[ True, False,  True]])
    """
    own = cluster_labels[:, idx][:, :, None]  # runs x rows x 1
    return (cluster_labels[:, background] == own).any(0)


def init_bank(n: int, dim: int, generator):
    """The authors' initial memory bank: uniform in ``[-s, s]`` with ``s = 1 / sqrt(dim /
    3)``, rows L2-normalised."""
    import torch

    scale = 1.0 / math.sqrt(dim / 3)
    bank = torch.rand((n, dim), generator=generator) * (2 * scale) - scale
    return torch.nn.functional.normalize(bank, dim=1)


def bank_rows(bank, idx, embedding, momentum: float):
    """A memory bank's new rows: ``normalise(momentum * old + (1 - momentum) * new)``.

    Example:
        >>> import torch
        >>> bank = torch.tensor([[1.0, 0.0]])
        >>> bank_rows(bank, torch.tensor([0]), torch.tensor([[0.0, 1.0]]), 0.5)
        tensor([[0.7071, 0.7071]])
    """
    import torch

    mixed = momentum * bank[idx] + (1 - momentum) * embedding
    return torch.nn.functional.normalize(mixed, dim=1)


def bank_clusters(bank: np.ndarray, n_centroids: int, runs: int, seed: int,
                  device: str = "cpu") -> np.ndarray:
    """``runs`` k-means clusterings of the memory bank into ``n_centroids`` clusters
    (faiss, 20 Lloyd iterations from random centres on every row, as the authors run
    them; seeds ``seed, seed + 1, ...``): runs x rows of cluster labels."""
    from sklearn.exceptions import ConvergenceWarning

    from .kmeans import KMeans

    out = np.empty((runs, len(bank)), dtype=np.int64)
    with warnings.catch_warnings():  # a run leaving a centroid empty is harmless here
        warnings.simplefilter("ignore", ConvergenceWarning)
        for run in range(runs):
            km = KMeans(n_centroids, n_init=1, max_iter=20, init="random",
                        max_points_per_centroid=None, device=device,
                        random_state=(seed + run) % 2**31)
            out[run] = km.fit(bank).labels_
    return out


def resolve_count(value, n: int, low: int = 1) -> int:
    """A count given as an int, or as a float share of ``n`` rows (rounded), kept within
    ``[low, n]``.

    Example:
        >>> resolve_count(0.05, 3200), resolve_count(40, 3200), resolve_count(0.001, 100)
        (160, 40, 1)
    """
    count = int(round(value * n)) if isinstance(value, float) else int(value)
    return int(min(max(count, low), n))


class BankStep:
    """The optimiser as the trainer sees it: each step steps the optimiser, then writes
    the batch's new rows into the memory bank (after the backward pass, which still needs
    the bank as it was), as the authors update it."""

    def __init__(self, opt, bank):
        self.opt, self.bank, self.pending = opt, bank, None

    def zero_grad(self):
        self.opt.zero_grad()

    def step(self):
        self.opt.step()
        if self.pending is not None:
            idx, rows = self.pending
            self.bank[idx] = rows
            self.pending = None


def spectral_labels(embedding: np.ndarray, n_clusters: int, n_neighbors: int, n_init: int,
                    seed: int):
    """Spectral clustering of an embedding on its ``n_neighbors``-nearest-neighbour graph,
    as scikit-learn's ``SpectralClustering(affinity="nearest_neighbors")`` builds it (each
    row joined to itself and its ``n_neighbors - 1`` nearest rows, the graph symmetrised
    as ``(A + A.T) / 2``), with the neighbours searched by faiss (exact, or an inverted
    file on large inputs) instead of a brute-force search; then k-means (``n_init``
    runs) on the ``n_clusters`` leading eigenvectors of the normalised Laplacian.

    Returns None when the graph falls apart into more components than ``n_clusters``:
    there the eigenvectors pick out the small components (repeated tokens embed identically) and
    one cluster takes nearly every other row (token rows of MiniLM block 3: NMI 0.06, the
    largest cluster 96 % of the rows).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> E = np.vstack([rng.normal(0, 0.1, (30, 3)) + c for c in np.eye(3) * 3])
        >>> labels = spectral_labels(E, 3, 10, n_init=3, seed=0)
        >>> [len(set(labels[i:i + 30])) for i in (0, 30, 60)], len(set(labels))
        ([1, 1, 1], 3)
    """
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components
    from sklearn.cluster import spectral_clustering

    from ..label_free import nearest_neighbors

    n = len(embedding)
    found = nearest_neighbors(embedding, k=min(n_neighbors, n) - 1, metric="euclidean",
                              random_state=seed)[0] if n_neighbors > 1 else np.zeros((n, 0))
    rows = np.repeat(np.arange(n), found.shape[1] + 1)
    cols = np.concatenate([np.arange(n)[:, None], found], axis=1).ravel()
    graph = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    graph = 0.5 * (graph + graph.T)
    if connected_components(graph, directed=False)[0] > n_clusters:
        return None
    return spectral_clustering(graph, n_clusters=n_clusters, n_init=n_init,
                               random_state=seed)
