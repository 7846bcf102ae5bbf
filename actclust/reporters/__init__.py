"""Unsupervised reporters: each a scikit-learn estimator that finds structure in activations.

``X`` may be a numpy array, a torch tensor or a store layer (``store.layer(name)``);
reporters built for large data (``KMeans``, ``PCA``) stream a layer in batches instead of
loading it. Every reporter is registered by name for the CLI and sweep files, declaring
what it is (:func:`capabilities`); trained reporters save and load without pickle
(``save(path)``, ``load(path)``, :func:`load_reporter`).

Example:
    >>> sorted(registry())  # doctest: +NORMALIZE_WHITESPACE
    ['aekmeans', 'agglomerative', 'ccs', 'dac', 'dec', 'deepcluster', 'gmm', 'idec', 'iic',
     'imsat', 'kmeans', 'local_aggregation', 'pca', 'sae', 'scan', 'temi', 'turtle']
    >>> [name for name in sorted(registry()) if is_clusterer(name)]  # doctest: +NORMALIZE_WHITESPACE
    ['aekmeans', 'agglomerative', 'dac', 'dec', 'deepcluster', 'gmm', 'idec', 'iic', 'imsat',
     'kmeans', 'local_aggregation', 'scan', 'temi', 'turtle']
"""

from ._base import (Capabilities, capabilities, configure, get_reporter, is_clusterer,
                    is_transformer, make_reporter, register, registry)
from ._io import load_reporter
from .aekmeans import AEKMeans
from .ccs import CCS, contrast_pairs
from .dac import DAC
from .dec import DEC, IDEC
from .deepcluster import DeepCluster
from .iic import IIC
from .imsat import IMSAT
from .agglomerative import Agglomerative
from .gmm import GMM, select_k
from .kmeans import KMeans
from .local_aggregation import LocalAggregation
from .pca import PCA
from .sae import SparseAutoencoder
from .scan import SCAN
from .temi import TEMI
from .turtle import TURTLE

__all__ = ["PCA", "KMeans", "GMM", "Agglomerative", "AEKMeans", "DEC", "IDEC", "IIC",
           "DeepCluster", "CCS", "SCAN", "TEMI", "TURTLE", "LocalAggregation", "IMSAT", "DAC",
           "SparseAutoencoder",
           "contrast_pairs", "select_k",
           "Capabilities", "capabilities", "configure", "is_clusterer", "is_transformer",
           "make_reporter", "load_reporter",
           "get_reporter", "register", "registry"]
