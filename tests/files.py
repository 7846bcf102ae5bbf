"""What the safety tests need to prove that nothing outside a target changed (the fixture
``opened``, in conftest.py, proves that nothing outside a store was read)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def snapshot(root: Path) -> dict:
    """Every entry under ``root``, links not followed: files by content hash, links by
    target, folders by name, anything else (a FIFO, a device: reading it could block) by
    its mode."""
    found = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir",)
            elif path.is_file():
                found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                found[rel] = ("other", os.lstat(path).st_mode)
    return found


def one_shard_store(root, layer: str, X, rows, docs, doc_stop=None):
    """A store of one shard written through the store's own writer, which keeps the rows'
    order and the documents' ids as given (``doc_stop``: the documents planned, default
    all of ``docs``)."""
    from actclust import ActivationStore
    from actclust.store.writer import StoreWriter

    plan = [{"index": 0, "doc_start": 0, "doc_stop": doc_stop or len(docs), "rows": len(X)}]
    with StoreWriter(root, {"model": {"name": "toy"}}, plan, [layer], docs, "float32") as w:
        w.begin_shard(plan[0])
        w.append({layer: X}, rows)
        w.commit_shard()
        w.finalize()
    return ActivationStore(root)


def write_shards(writer, data: dict, shards, rows_per_doc: int) -> None:
    """Write ``shards`` of a plan whose documents each hold ``rows_per_doc`` rows of every
    layer in ``data`` (layer name -> all its rows)."""
    import numpy as np
    import pandas as pd

    for shard in shards:
        writer.begin_shard(shard)
        lo, hi = shard["doc_start"] * rows_per_doc, shard["doc_stop"] * rows_per_doc
        rows = pd.DataFrame({"doc_id": np.repeat(np.arange(shard["doc_start"],
                                                           shard["doc_stop"]), rows_per_doc)})
        writer.append({name: layer[lo:hi] for name, layer in data.items()}, rows)
        writer.commit_shard()
