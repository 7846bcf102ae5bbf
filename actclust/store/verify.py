"""``actclust verify``: every check a store can be put through, one message per problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import format as fmt
from . import paths
from .shards import open_shard


def verify_store(root) -> list[str]:
    """Check a store against its manifest; returns one message per problem found.

    The manifest's structure and names; for a complete store, that ``rows.parquet`` has
    ``n_rows`` rows whose documents are in ``docs.parquet``; then every shard of every
    layer: inside the store and not a symlink, a valid ``.npy`` header with the manifest's
    rows, row shape, dtype and C order, a size that matches its header and the manifest,
    and the checksums the manifest lists. A folder that is not a store at all is an
    :class:`ActclustError`, not a problem.

    Example:
        >>> import tempfile
        >>> import actclust
        >>> store = actclust.capture("minilm", "topics", "blocks.0.hook_out", pool="mean",
        ...                          out=tempfile.mkdtemp() + "/s", limit=8, progress=False)
        >>> verify_store(store.root)
        []
    """
    root = Path(root)
    manifest = fmt.read_manifest(root, validate=False)
    try:
        fmt.validate_manifest(manifest)
    except fmt.ManifestError as err:
        return [f"{fmt.MANIFEST}: {err.detail}"]
    problems = []
    if not manifest["complete"]:
        problems.append(f"{root}: capture incomplete ({len(manifest['shards_done'])}"
                        f" of {len(manifest['plan'])} shards); resume it with --resume")
    else:
        problems += _table_problems(root, manifest["n_rows"])
    for name, info in manifest["layers"].items():
        trailing = tuple(info["shape"][1:]) if info["shape"] else None
        for shard in info["shards"]:
            label = f"{fmt.LAYERS_DIR}/{name}/{shard['file']}"
            array, found = open_shard(root, name, shard, info["dtype"], trailing,
                                      checksum=True)
            problems += [f"{label}: {problem}" for problem in found]
            if array is not None and trailing is None and shard["rows"]:
                trailing = array.shape[1:]
    return problems


def _table_problems(root: Path, n_rows: int) -> list[str]:
    tables = {}
    for name, columns in ((fmt.ROWS, ["row", "doc_id"]), (fmt.DOCS, ["doc_id"])):
        fh, why = paths.open_checked(root, name)
        if fh is None:
            return [f"{name}: {why[3:] if why.startswith('is ') else why}"]
        try:
            with fh:
                tables[name] = pd.read_parquet(fh, columns=columns)
        except Exception as err:  # any parquet failure means a damaged table
            return [f"{name}: unreadable ({type(err).__name__}: {str(err)[:120]})"]
    rows, docs = tables[fmt.ROWS], tables[fmt.DOCS]
    problems = []
    if len(rows) != n_rows:
        problems.append(f"{fmt.ROWS}: {len(rows)} rows, manifest says {n_rows}")
    elif not np.array_equal(rows["row"].to_numpy(), np.arange(n_rows)):
        problems.append(f"{fmt.ROWS}: its row column is not 0 .. n_rows - 1")
    orphans = ~rows["doc_id"].isin(docs["doc_id"])
    if orphans.any():
        problems.append(f"{fmt.ROWS}: {int(orphans.sum())} rows point to documents "
                        f"missing from {fmt.DOCS}")
    return problems
