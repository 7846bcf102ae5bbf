"""A store layer as a torch ``IterableDataset``; imported only when torch is wanted.

Opening or reading a store never imports torch: :meth:`LayerView.torch_dataset` imports
this module on first use.
"""

from __future__ import annotations

import numpy as np
import torch.utils.data


class LayerIterable(torch.utils.data.IterableDataset):
    """Float32 batches of one layer, split across ``DataLoader`` workers.

    Each pass draws a new permutation (``seed + epoch``), the same in every worker, and
    worker ``i`` of ``n`` takes batches ``i, i + n, ...``, so workers never overlap.

    Example:
        >>> from actclust.store.torch_data import LayerIterable
        >>> loader = torch.utils.data.DataLoader(LayerIterable(view, 256, True, 0, None),
        ...                                      batch_size=None)  # doctest: +SKIP
    """

    def __init__(self, view, batch_size: int, shuffle: bool, seed: int, labels):
        self.view, self.batch_size, self.shuffle = view, batch_size, shuffle
        self.seed, self.labels, self.epoch = seed, labels, 0

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        batches = self.view.iter_batches(self.batch_size, self.shuffle,
                                         self.seed + self.epoch, self.labels, np.float32)
        self.epoch += 1
        for i, item in enumerate(batches):
            if i % n_workers != worker:
                continue
            # a copy: batches may be views of the read-only memory map
            if self.labels is None:
                yield torch.from_numpy(np.array(item))
            else:
                yield torch.from_numpy(np.array(item[0])), item[1]

    def __len__(self):
        return -(-len(self.view) // self.batch_size)
