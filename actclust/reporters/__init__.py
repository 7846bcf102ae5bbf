"""Unsupervised reporters: each a scikit-learn estimator that finds structure in activations.

``X`` may be a numpy array, a torch tensor or a store layer (``store.layer(name)``);
reporters built for large data (``KMeans``, ``PCA``) stream a layer in batches instead of
loading it. Every reporter is registered by name for the CLI and sweep files.

Example:
    >>> sorted(registry())
    ['aekmeans', 'agglomerative', 'ccs', 'dec', 'deepcluster', 'gmm', 'idec', 'iic', 'kmeans', 'pca']
"""

from ._base import get_reporter, register, registry
from .aekmeans import AEKMeans
from .ccs import CCS, contrast_pairs
from .dec import DEC, IDEC
from .deepcluster import DeepCluster
from .iic import IIC
from .agglomerative import Agglomerative
from .gmm import GMM, select_k
from .kmeans import KMeans
from .pca import PCA

__all__ = ["PCA", "KMeans", "GMM", "Agglomerative", "AEKMeans", "DEC", "IDEC", "IIC",
           "DeepCluster", "CCS",
           "contrast_pairs", "select_k",
           "get_reporter", "register", "registry"]
