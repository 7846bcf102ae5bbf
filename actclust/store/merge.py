"""One store from the part stores of a parallel capture: move, never copy.

A capture split over workers (:mod:`actclust.capture_parallel`) writes each contiguous
range of the documents as a complete store of its own, ``STORE/.parts/part-NNNN/``, next to
``STORE/.parts/parts.json``, the record of the split. :func:`merge_parts` then makes
``STORE`` the store a single process would have written:

* every part's shard files are renamed (``os.replace``: no byte is copied) into
  ``layers/<layer>/NNNNN.npy`` under their numbers in the whole store, and each shard's
  manifest entry is carried over whole, only its file name changed;
* the parts' document and row tables are concatenated, the row numbers running on;
* the manifest goes in last. Before the first move an incomplete manifest (``"merging"``)
  marks the folder as a store being merged, so a merge stopped half way leaves a store that
  readers refuse as incomplete, never one that looks whole; merging again finishes it (a
  shard already moved is found, and checked, where it was moved to).

The idea is SAELens' consolidation of an activation cache
(``CacheActivationsRunner._consolidate_shards``): shards are written one by one under a
hidden folder of the output, then moved into the final layout and listed by one new index,
never copied. Here the index is written atomically and last, and a stopped merge can be
finished. Everything is confined as the rest of the store code is (``docs/safety.md``):
only folders recognised by their content (the record, and each part's manifest naming its
part) are acted on, and no symlink is followed or moved.
"""

from __future__ import annotations

import json
import os
import re
import stat
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ActclustError
from . import format as fmt
from . import paths
from .lock import StoreLock
from .resume import real_dir
from .shards import open_shard
from .writer import checked_output, write_parquet_atomic

PARTS_DIR = ".parts"
PARTS_RECORD = "parts.json"
PARTS_FORMAT = "actclust-parts"
PART_KEY = "actclust_part"  # in a part store's manifest: dataset.actclust_part
MERGE_KEY = "merging"  # in the incomplete manifest of a store being merged
PART_DIR = re.compile(r"\Apart-\d{4,}\Z")
RECORD_TMP = re.compile(r"\A\.parts\.json(\.[0-9a-f]+)?\.tmp\Z")


def part_name(index: int) -> str:
    """Folder name of part ``index``.

    Example:
        >>> part_name(3)
        'part-0003'
    """
    return f"part-{index:04d}"


def parts_path(root) -> Path:
    return Path(root) / PARTS_DIR


def part_path(root, index: int) -> Path:
    return parts_path(root) / part_name(index)


def part_marker(part: dict, n_parts: int) -> dict:
    """What a part store's manifest says of itself (``dataset.actclust_part``): its place
    in the split, checked against the record before anything is moved."""
    return {"index": part["index"], "of": n_parts, "doc_start": part["doc_start"],
            "doc_stop": part["doc_stop"]}


def _kind(path: Path) -> str:
    mode = os.lstat(path).st_mode
    return "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else \
        "file" if stat.S_ISREG(mode) else "other"


def _record_problem(record) -> str | None:
    if not isinstance(record, dict) or record.get("format") != PARTS_FORMAT:
        return f"its {PARTS_RECORD} is not a record of parts"
    parts = record.get("parts")
    if not isinstance(parts, list) or not parts or not isinstance(record.get("header"), dict):
        return f"its {PARTS_RECORD} lists no parts"
    start = 0
    for i, part in enumerate(parts):
        values = [part.get(k) if isinstance(part, dict) else None
                  for k in ("index", "doc_start", "doc_stop")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values) or \
                values[0] != i or values[1] != start or values[2] <= start:
            return f"part {i} of its {PARTS_RECORD} is not the next range of documents"
        start = values[2]
    return None


def write_parts_record(root, parts: list, header: dict) -> dict:
    """Create ``root/.parts/`` and write the record of the split into it; returns it."""
    record = {"format": PARTS_FORMAT, "header": header,
              "parts": [{k: p[k] for k in ("index", "doc_start", "doc_stop", "rows")}
                        for p in parts]}
    problem = _record_problem(record)
    if problem:
        raise ValueError(problem)
    folder = real_dir(Path(root), parts_path(root))
    fmt.atomic_write_bytes(folder / PARTS_RECORD, json.dumps(record, indent=1).encode())
    return record


def read_parts_record(root) -> dict | None:
    """The record of the split under ``root/.parts/``; None when there is no parts folder,
    or only an empty one (a run stopped before its record was written, which is then
    removed). A parts folder this capture did not write is refused, never entered."""
    folder = parts_path(root)
    if not os.path.lexists(folder):
        return None
    if _kind(folder) != "dir":
        raise ActclustError(f"{folder} is not a folder a capture wrote (it is a symlink or a "
                            "file); move it away")
    entries = list(folder.iterdir())
    if not os.path.lexists(folder / PARTS_RECORD):
        if all(RECORD_TMP.match(p.name) and _kind(p) == "file" for p in entries):
            for path in entries:
                path.unlink()
            folder.rmdir()
            return None
        raise ActclustError(f"{folder} was not written by an actclust capture (it has no "
                            f"{PARTS_RECORD}); move it away or choose another --out")
    try:
        with fmt.open_regular(folder / PARTS_RECORD) as fh:
            record = json.loads(fh.read())
    except (OSError, ValueError, RecursionError) as err:
        raise ActclustError(f"{folder / PARTS_RECORD} is not a readable record of parts "
                            f"({str(err)[:100]}); move {folder} away") from None
    problem = _record_problem(record)
    if problem:
        raise ActclustError(f"{folder} was not written by an actclust capture ({problem}); "
                            "move it away or choose another --out")
    return record


def part_manifest(root, record: dict, index: int) -> dict | None:
    """The manifest of part ``index``; None when the part has not written one yet. A
    folder in its place that is not that part of this capture is refused."""
    folder = part_path(root, index)
    if not os.path.lexists(folder):
        return None
    if _kind(folder) != "dir":
        raise ActclustError(f"{folder} is a symlink or a file, not a part this capture "
                            "wrote; move it away")
    if not os.path.lexists(folder / fmt.MANIFEST):
        return None
    manifest = fmt.read_manifest(folder)
    want = part_marker(record["parts"][index], len(record["parts"]))
    if manifest.get("dataset", {}).get(PART_KEY) != want:
        raise ActclustError(f"{folder} is not part {index} of this capture (its manifest "
                            f"does not name documents {want['doc_start']}-"
                            f"{want['doc_stop'] - 1}); move {parts_path(root)} away")
    return manifest


def parts_entries(root, record: dict) -> list[Path]:
    """Every file and folder under ``root/.parts/`` (deepest first), after checking that
    each is the record, a part this capture wrote, or what such a part consists of;
    anything else is refused, named, before anything is deleted."""
    folder = parts_path(root)
    entries = []
    listed = {part_name(p["index"]) for p in record["parts"]}
    for path in sorted(folder.iterdir()):
        kind = _kind(path)
        if kind == "file" and (path.name == PARTS_RECORD or RECORD_TMP.match(path.name)):
            entries.append(path)
        elif kind == "dir" and path.name in listed:
            index = int(path.name.split("-", 1)[1])
            if part_manifest(root, record, index) is None:
                state, why = paths.classify(path)  # killed before its first manifest
                if state != "empty":
                    raise ActclustError(f"{path} is not a part this capture wrote ({why}); "
                                        "move it away")
                entries += sorted(path.iterdir())
            else:
                entries += paths.store_entries(path)
            entries.append(path)
        else:
            raise ActclustError(f"{folder} holds {path.name}, which this capture did not "
                                "write; move it away")
    return entries + [folder]


def remove_parts(root, record: dict) -> None:
    """Delete the parts folder once everything in it is known to be ours."""
    paths.remove_entries(parts_entries(root, record))


def target_state(root, resume: bool, overwrite: bool) -> tuple[Path, str]:
    """Check ``root`` for a parallel capture before anything is loaded or written; returns
    its absolute path and what it holds: ``absent``, ``empty``, ``parts`` (an interrupted
    run: parts, no manifest), ``merging`` (a merge stopped half way), ``complete`` (a
    store) or ``interrupted`` (a single-process capture that stopped).

    The rules are those of a single-process capture (:func:`.writer.check_store_target`),
    with the parts folder counted as ours.
    """
    path = checked_output(root, resume, overwrite)
    if not os.path.lexists(path):
        return path, "absent"
    if _kind(path) != "dir":
        raise ActclustError(f"output {path} exists and is not a directory")
    if os.path.lexists(path / fmt.MANIFEST):
        state, why = paths.classify(path)
        if state != "store":
            raise ActclustError(f"output {path} already exists and is not an actclust store "
                                f"({why}); choose a new or empty directory")
        manifest = fmt.read_manifest(path)
        kind = "merging" if manifest.get(MERGE_KEY) else \
            "complete" if manifest["complete"] else "interrupted"
    else:
        others = [p for p in path.iterdir() if p.name != PARTS_DIR and
                  not (paths.is_debris(p) and _kind(p) == "file")]
        if others:
            raise ActclustError(f"output {path} already exists and is not an actclust store "
                                f"(it holds {others[0].name} and no {fmt.MANIFEST}); choose "
                                "a new or empty directory")
        kind = "parts" if os.path.lexists(parts_path(path)) else "empty"
    if kind in ("complete", "interrupted") and not (resume or overwrite):
        raise ActclustError(f"output {path} already exists; pass --resume to finish an "
                            "interrupted capture or --overwrite to replace it")
    if kind in ("parts", "merging") and not (resume or overwrite):
        raise ActclustError(f"output {path} holds an interrupted parallel capture; pass "
                            "--resume to finish it or --overwrite to start again")
    if kind == "interrupted" and resume:
        raise ActclustError(f"output {path} is an interrupted single-process capture; "
                            "finish it with --backend local --resume, or start again "
                            "with --overwrite")
    holder = StoreLock(path).holder()
    if holder:
        raise ActclustError(f"store {path} is being written by another writer ({holder}); "
                            "wait for it to finish or stop it, then retry")
    return path, kind


def clear_target(root: Path, keep: Path | None = None) -> None:
    """For ``--overwrite``: remove the parts folder (when ours) and the store at ``root``
    (only what a store consists of), keeping ``keep`` (the writer's lock)."""
    record = read_parts_record(root)
    if record is not None:
        remove_parts(root, record)
    if os.path.lexists(root / fmt.MANIFEST):
        paths.remove_entries(paths.store_entries(root), keep=keep)


def _merged(header: dict, record: dict, manifests: list) -> tuple[dict, list]:
    """The manifest of the merged store, from the parts' (checked to agree), and the
    number of each part's first shard in it."""
    first = manifests[0]
    names = list(first["layers"])
    plan, shards, n_rows, bases = [], {name: [] for name in names}, 0, []
    for part, m in zip(record["parts"], manifests):
        where = f"part {part['index']}"
        if list(m["layers"]) != names:
            raise ActclustError(f"cannot merge: {where} holds layers "
                                f"{', '.join(m['layers'])}, part 0 {', '.join(names)}")
        n_docs = m["plan"][-1]["doc_stop"] if m["plan"] else 0
        if n_docs != part["doc_stop"] - part["doc_start"]:
            raise ActclustError(f"cannot merge: {where} holds {n_docs} documents, the record "
                                f"says {part['doc_stop'] - part['doc_start']}")
        base = len(plan)
        bases.append(base)
        for entry in m["plan"]:
            plan.append({**entry, "index": base + entry["index"],
                         "doc_start": part["doc_start"] + entry["doc_start"],
                         "doc_stop": part["doc_start"] + entry["doc_stop"]})
        for name in names:
            info, head = m["layers"][name], first["layers"][name]
            if info["dtype"] != head["dtype"] or info["shape"][1:] != head["shape"][1:]:
                raise ActclustError(f"cannot merge: layer {name} of {where} is "
                                    f"{info['dtype']} {info['shape'][1:]}, of part 0 "
                                    f"{head['dtype']} {head['shape'][1:]}")
            # Every field of a shard's entry (checksums included, whatever their names) is
            # the part's own: only the file name changes with the shard's new number.
            shards[name] += [{**s, "file": fmt.shard_name(base + fmt.shard_index(s["file"]))}
                             for s in info["shards"]]
        n_rows += m["n_rows"]
    merged = dict(first)  # the parts' key order and any field a writer adds
    merged.pop("shards_done", None)
    merged.update(header)
    merged.update({
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "complete": True, "n_rows": n_rows, "plan": plan,
        "layers": {name: {**first["layers"][name],
                          "shape": [n_rows, *first["layers"][name]["shape"][1:]],
                          "shards": shards[name], "complete": True} for name in names}})
    fmt.validate_manifest(merged)
    return merged, bases


def _in_progress(merged: dict, n_parts: int) -> dict:
    """The manifest written before the first move: the same store, none of it finished."""
    started = dict(merged)
    started.update({"complete": False, "shards_done": [], MERGE_KEY: {"parts": n_parts},
                    "layers": {name: {**info, "shape": None, "shards": [], "complete": False}
                               for name, info in merged["layers"].items()}})
    return started


def _move_shard(root: Path, part_root: Path, layer: str, old: dict, new: dict,
                dtype: str) -> None:
    """Rename one shard from its part into the store; when an earlier merge already moved
    it, check it where it is."""
    source = part_root / fmt.LAYERS_DIR / layer / old["file"]
    target = root / fmt.LAYERS_DIR / layer / new["file"]
    if os.path.lexists(source):
        _, problems = open_shard(part_root, layer, old, dtype, None, mapped=False)
        if problems:
            raise ActclustError(f"cannot merge: {source}: {problems[0]}; start the capture "
                                "again with --overwrite")
        os.replace(source, target)
        return
    _, problems = open_shard(root, layer, new, dtype, None, mapped=False)
    if problems:
        raise ActclustError(f"cannot merge: shard {old['file']} of {part_root.name} is "
                            f"neither in the part nor at {target} ({problems[0]}); start the "
                            "capture again with --overwrite")


def _table(folder: Path, name: str) -> pd.DataFrame:
    with paths.open_in_store(folder, name, what="table") as fh:
        return pd.read_parquet(fh)


def merge_parts(root, header: dict, record: dict) -> dict:
    """Merge the complete part stores under ``root/.parts/`` into the store ``root``;
    returns its manifest. ``header`` holds the manifest's provenance fields (model,
    dataset, capture) of the whole capture. Run again after an interruption, it finishes
    the same merge. The caller holds the store's lock.
    """
    root = Path(root)
    manifests = []
    for part in record["parts"]:
        manifest = part_manifest(root, record, part["index"])
        if manifest is None or not manifest["complete"]:
            raise ActclustError(f"cannot merge: part {part['index']} "
                                f"({part_path(root, part['index'])}) is not complete; rerun "
                                "with --resume")
        manifests.append(manifest)
    merged, bases = _merged(header, record, manifests)
    if os.path.lexists(root / fmt.MANIFEST):
        current = fmt.read_manifest(root)
        if not current.get(MERGE_KEY) or current["plan"] != merged["plan"] or \
                list(current["layers"]) != list(merged["layers"]):
            raise ActclustError(f"cannot merge into {root}: it holds another store; start "
                                "again with --overwrite")
    else:
        fmt.write_manifest(root, _in_progress(merged, len(manifests)))
    layers_dir = real_dir(root, root / fmt.LAYERS_DIR)
    for name in merged["layers"]:
        real_dir(root, layers_dir / name)
    for part, manifest, base in zip(record["parts"], manifests, bases):
        part_root = part_path(root, part["index"])
        for name, info in manifest["layers"].items():
            for old in info["shards"]:
                new = dict(old, file=fmt.shard_name(base + fmt.shard_index(old["file"])))
                _move_shard(root, part_root, name, old, new, info["dtype"])
            fmt.fsync_dir(part_root / fmt.LAYERS_DIR / name)
    for name in merged["layers"]:
        fmt.fsync_dir(layers_dir / name)  # the renames are durable before the manifest
    docs, rows = [], []
    for part, manifest in zip(record["parts"], manifests):
        part_root = part_path(root, part["index"])
        docs.append(_table(part_root, fmt.DOCS))
        rows.append(_table(part_root, fmt.ROWS).drop(columns="row", errors="ignore"))
        if len(rows[-1]) != manifest["n_rows"]:
            raise ActclustError(f"cannot merge: {part_root / fmt.ROWS} has {len(rows[-1])} "
                                f"rows, its manifest says {manifest['n_rows']}")
    table = pd.concat(rows, ignore_index=True)
    table.insert(0, "row", np.arange(len(table), dtype=np.int64))
    write_parquet_atomic(pd.concat(docs, ignore_index=True), root / fmt.DOCS)
    write_parquet_atomic(table, root / fmt.ROWS)
    fmt.write_manifest(root, merged)  # last: from here on the store is complete
    try:
        remove_parts(root, record)
    except (ActclustError, OSError) as err:
        warnings.warn(f"store {root} is complete, but its parts folder was not removed "
                      f"({err})", stacklevel=2)
    return merged
