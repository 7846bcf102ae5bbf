"""``digits``: scikit-learn's 1,797 handwritten 8x8 digit images, a non-text dataset.

The images ship inside scikit-learn, so nothing is downloaded. Pixels are scaled from 0..16
to 0..1 and stored as float32 rows of 64 values, the input the bundled ``digits-mlp`` takes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Dataset

DESCRIPTION = "1,797 8x8 handwritten digit images from scikit-learn (label: digit; non-text)"


def build() -> Dataset:
    """The ``digits`` dataset: ``inputs`` is float32 (1797, 64) in [0, 1]; label ``digit``.

    Example:
        >>> ds = build()
        >>> ds.inputs.shape, ds.inputs.dtype.name, list(ds.docs.columns), ds.is_text
        ((1797, 64), 'float32', ['doc_id', 'digit'], False)
    """
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    bunch = load_digits()
    inputs = np.ascontiguousarray(bunch.data / 16.0, dtype=np.float32)
    docs = pd.DataFrame({"doc_id": np.arange(len(inputs), dtype=np.int64),
                         "digit": np.asarray(bunch.target, dtype=np.int64)})
    return Dataset("digits", docs, inputs=inputs, description=DESCRIPTION,
                   meta={"source": "sklearn.datasets.load_digits", "image_shape": [8, 8],
                         "scale": "pixel / 16"})
