"""The on-disk format of a store: paths, the manifest, and atomic file writes.

Everything here is plain files that numpy, pandas and ``json`` read without actclust;
``docs/store-format.md`` is the specification.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._util.files import atomic_write, atomic_write_bytes, fsync_dir  # noqa: F401

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
ROWS = "rows.parquet"
DOCS = "docs.parquet"
LAYERS_DIR = "layers"
ROW_PARTS_DIR = "rows.parts"  # per-shard row tables while a capture is in progress

# numpy has no bfloat16: such shards hold the raw 16 bits as uint16 and the manifest says
# "bfloat16"; readers widen them to float32 (see ``decode``).
STORAGE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"),
                  "bfloat16": np.dtype("<u2")}


def layer_dir_name(layer: str) -> str:
    """Directory name of a layer: hook names are already safe (dots, digits, letters).

    Example:
        >>> layer_dir_name("blocks.2.hook_out")
        'blocks.2.hook_out'
    """
    if not layer or "/" in layer or "\\" in layer or layer in (".", ".."):
        raise ValueError(f"layer name {layer!r} cannot be used as a directory name")
    return layer


def shard_name(index: int) -> str:
    return f"{index:05d}.npy"


def decode(array: np.ndarray, storage_dtype: str) -> np.ndarray:
    """Turn stored values into numbers numpy understands (bfloat16 bits -> float32).

    Example:
        >>> bits = np.array([0x3F80], dtype="<u2")  # 1.0 in bfloat16
        >>> decode(bits, "bfloat16")
        array([1.], dtype=float32)
    """
    if storage_dtype == "bfloat16":
        return (np.asarray(array).astype(np.uint32) << 16).view(np.float32)
    return array


def write_manifest(root: Path, manifest: dict) -> None:
    atomic_write_bytes(root / MANIFEST, json.dumps(manifest, indent=1).encode())


def read_manifest(root: Path) -> dict:
    """Read and sanity-check ``manifest.json``; errors say what is wrong with the store."""
    from ..errors import ActclustError

    path = Path(root) / MANIFEST
    if not path.exists():
        if not Path(root).exists():
            raise ActclustError(f"store {root} does not exist")
        raise ActclustError(f"{root} is not an actclust store: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ActclustError(f"cannot read {path}: {err}. The store is damaged; "
                            "capture it again with --overwrite") from None
    version = manifest.get("schema_version")
    if not isinstance(version, int):
        raise ActclustError(f"{path} has no schema_version: not an actclust store manifest")
    if version > SCHEMA_VERSION:
        raise ActclustError(
            f"store {root} was written by actclust {manifest.get('actclust_version', '?')} "
            f"with store schema {version}; this actclust reads schema <= {SCHEMA_VERSION}. "
            "Upgrade actclust (pip install -U actclust).")
    return manifest
