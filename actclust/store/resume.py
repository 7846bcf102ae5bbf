"""What a writer checks and cleans before it continues an existing store.

Resuming trusts nothing the interrupted run left: files the manifest does not list are
removed only when their names are ones a writer makes (anything else is refused, named);
no folder that is a symlink is entered; every shard the manifest counts as finished is
checked (present, its header and size as listed, with ``verify`` its checksum) and captured
again when it fails; a complete store is resumed only when whole.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from ..errors import ActclustError
from . import format as fmt
from . import paths
from .shards import open_shard


def real_dir(root: Path, path: Path) -> Path:
    """``path`` as a real folder of the store: created if missing, never a symlink."""
    if path.is_symlink():
        raise ActclustError(f"cannot write store {root}: {path} is a symlink; a store never "
                            "writes through a link. Remove it")
    if path.exists() and not path.is_dir():
        raise ActclustError(f"cannot write store {root}: {path} is not a folder")
    path.mkdir(exist_ok=True)
    return path


def _sweep(folder: Path, keep: set, patterns) -> None:
    """Delete files in ``folder`` not in ``keep`` that a writer could have left; anything
    else there is not the store's to delete, and is refused."""
    for path in folder.iterdir():
        if path.name in keep:
            continue
        if not any(p.match(path.name) for p in patterns) or \
                (path.is_dir() and not path.is_symlink()):
            raise ActclustError(f"cannot resume: {path} is not part of the store; move it "
                                "away, then resume")
        path.unlink()  # a symlink goes, never what it points to


def remove_debris(root: Path, manifest: dict, layers: list) -> None:
    """Delete the files a killed run left that the manifest does not list."""
    layers_dir = real_dir(root, root / fmt.LAYERS_DIR)
    for name in layers:
        listed = {s["file"] for s in manifest["layers"][name]["shards"]}
        _sweep(real_dir(root, layers_dir / name), listed, (fmt.SHARD_FILE, paths.SHARD_TMP))
    done = {f"{i:05d}.parquet" for i in manifest["shards_done"]}
    _sweep(real_dir(root, root / fmt.ROW_PARTS_DIR), done, (fmt.PART_FILE, paths.PART_TMP))
    for path in root.iterdir():
        if paths.ROOT_TMP.match(path.name) and not path.is_dir():
            path.unlink()


def parquet_rows(root: Path, *parts: str) -> int | None:
    """Rows of a parquet file of the store, from its footer; None if missing or damaged."""
    import pyarrow.parquet as pq

    fh, _ = paths.open_checked(root, *parts)
    if fh is None:
        return None
    with fh:
        try:
            return int(pq.ParquetFile(fh).metadata.num_rows)
        except Exception:  # any parquet failure means a damaged file
            return None


def _shard_problem(root: Path, manifest: dict, layers: list, index: int, verify: bool,
                   trailing: dict) -> str | None:
    """Why finished shard ``index`` cannot be kept (its file in every layer and its row
    part), or None."""
    for name in layers:
        info = manifest["layers"][name]
        entry = next(s for s in info["shards"] if s["file"] == fmt.shard_name(index))
        empty, problems = open_shard(root, name, entry, info["dtype"], trailing.get(name),
                                     checksum=verify, mapped=False)
        if problems:
            return f"{fmt.LAYERS_DIR}/{name}/{entry['file']}: {problems[0]}"
        if entry["rows"]:
            trailing.setdefault(name, empty.shape[1:])
    part = f"{index:05d}.parquet"
    n, want = parquet_rows(root, fmt.ROW_PARTS_DIR, part), manifest["plan"][index]["rows"]
    if n != want:
        return f"{fmt.ROW_PARTS_DIR}/{part}: " + \
            (f"{n} rows, the plan says {want}" if n is not None else "missing or unreadable")
    return None


def drop_damaged_shards(root: Path, manifest: dict, layers: list, verify: bool) -> bool:
    """Forget (and delete) every finished shard that is not whole any more, so it is
    captured again; returns whether the manifest changed."""
    trailing, bad = {}, {}
    for index in sorted(manifest["shards_done"]):
        problem = _shard_problem(root, manifest, layers, index, verify, trailing)
        if problem:
            bad[index] = problem
    for index, problem in bad.items():
        file = fmt.shard_name(index)
        files = [root / fmt.LAYERS_DIR / name / file for name in layers]
        files.append(root / fmt.ROW_PARTS_DIR / f"{index:05d}.parquet")
        for path in files:  # a folder there is not a file a writer left: not ours
            if path.is_dir() and not path.is_symlink():
                raise ActclustError(f"cannot resume: {path} is a folder where a finished "
                                    "shard should be; move it away, then resume")
        warnings.warn(f"store {root}: finished shard {index} is damaged ({problem}); "
                      "capturing it again", stacklevel=5)
        for name in layers:
            info = manifest["layers"][name]
            info["shards"] = [s for s in info["shards"] if s["file"] != file]
        for path in files:
            if os.path.lexists(path):
                path.unlink()  # a symlink goes, never what it points to
        manifest["shards_done"].remove(index)
    return bool(bad)


def check_complete(root: Path, manifest: dict, verify: bool) -> None:
    """A complete store is resumed only when whole; it is never patched. Leftover row
    parts (a kill after the final manifest) are removed."""
    for name, info in manifest["layers"].items():
        for entry in info["shards"]:
            _, problems = open_shard(root, name, entry, info["dtype"],
                                     tuple(info["shape"][1:]), checksum=verify, mapped=False)
            if problems:
                raise ActclustError(
                    f"cannot resume: store {root} is complete but "
                    f"{fmt.LAYERS_DIR}/{name}/{entry['file']} is damaged ({problems[0]}); "
                    "capture it again with --overwrite")
    if parquet_rows(root, fmt.ROWS) != manifest["n_rows"]:
        raise ActclustError(f"cannot resume: store {root} is complete but its {fmt.ROWS} is "
                            "missing, unreadable or of the wrong length; capture it again "
                            "with --overwrite")
    if os.path.lexists(root / fmt.ROW_PARTS_DIR):
        shutil.rmtree(real_dir(root, root / fmt.ROW_PARTS_DIR))
