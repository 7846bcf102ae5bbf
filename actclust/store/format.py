"""The on-disk format of a store: names, the manifest and its validation.

Everything here is plain files that numpy, pandas and ``json`` read without actclust;
``docs/store-format.md`` is the specification and ``docs/safety.md`` says what a reader
may trust. A manifest is data from disk: :func:`read_manifest` checks its structure and
every name in it before anything else uses it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path

import numpy as np

from .._util.files import atomic_write, atomic_write_bytes, fsync_dir  # noqa: F401
from ..errors import ActclustError

# 2: shards may carry an xxh3_128 checksum instead of sha256 (the manifest's "checksum"
# names which); a store written with sha256 is still schema 1, readable by older actclust.
SCHEMA_VERSION = 2
MARKER = "actclust-store"  # the manifest's "format": what makes a directory a store
MANIFEST = "manifest.json"
ROWS = "rows.parquet"
DOCS = "docs.parquet"
LAYERS_DIR = "layers"
ROW_PARTS_DIR = "rows.parts"  # per-shard row tables while a capture is in progress
LOCK = ".lock"  # the writer lock, present only while a writer holds it

# numpy has no bfloat16: such shards hold the raw 16 bits as uint16 and the manifest says
# "bfloat16"; readers widen them to float32 (see ``decode``).
STORAGE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"),
                  "bfloat16": np.dtype("<u2")}

SHARD_FILE = re.compile(r"\A\d{5,}\.npy\Z")
PART_FILE = re.compile(r"\A\d{5,}\.parquet\Z")
# Shard checksums: the manifest key each algorithm is stored under, and its hex length.
# ``checksum="xxh3"`` (the default) is a fast non-cryptographic hash that catches damage;
# ``"sha256"`` also stands against deliberate tampering, at ~13x the cost.
CHECKSUMS = {"xxh3": "xxh3_128", "sha256": "sha256"}
CHECKSUM_DIGITS = {"xxh3_128": 32, "sha256": 64}
DEFAULT_CHECKSUM = "xxh3"
_HEX = {field: re.compile(rf"\A[0-9a-f]{{{n}}}\Z") for field, n in CHECKSUM_DIGITS.items()}
# Keys (and their JSON types) every manifest has had since schema 1; a manifest written
# before the marker existed is recognised by them.
REQUIRED = {"schema_version": int, "layers": dict, "n_rows": int, "plan": list,
            "complete": bool}


class ManifestError(ActclustError):
    """A manifest that is an actclust store's but whose content is malformed.

    ``detail`` holds the problem without the path, for ``verify``'s per-store report.
    """

    def __init__(self, path, detail: str):
        super().__init__(f"{path} is damaged: {detail}. Run `actclust verify` on the store, "
                         "then capture it again with --overwrite")
        self.detail = detail


def check_name(name, what: str = "layer name") -> str:
    """Refuse a name that is not one plain directory entry; returns it unchanged.

    Example:
        >>> check_name("blocks.2.hook_out")
        'blocks.2.hook_out'
        >>> check_name("blocks/../../x")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: layer name 'blocks/../../x' cannot be used as a directory name: it contains '/'
    """
    reason = None
    if not isinstance(name, str) or not name:
        reason = "it is empty" if name == "" else f"it is a {type(name).__name__}"
    elif name.startswith("."):
        reason = "it starts with '.'"
    elif any(bad in name for bad in ("/", "\\", "..", "\0")):
        reason = f"it contains {next(b for b in ('/', chr(92), '..', chr(0)) if b in name)!r}"
    elif any(ord(c) < 32 for c in name):
        reason = "it contains a control character"
    elif len(name.encode("utf-8", "surrogatepass")) > 255:
        reason = "it is longer than 255 bytes"
    if reason:
        raise ActclustError(f"{what} {name!r} cannot be used as a directory name: {reason}")
    return name


def layer_dir_name(layer: str) -> str:
    """Directory name of a layer: the layer name itself, once checked.

    Example:
        >>> layer_dir_name("blocks.2.hook_out")
        'blocks.2.hook_out'
    """
    return check_name(layer)


def shard_name(index: int) -> str:
    return f"{index:05d}.npy"


def shard_index(file: str) -> int:
    return int(file.split(".", 1)[0])


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


def open_regular(path: Path):
    """Open ``path`` for binary reading if it is a regular file reached without a symlink
    at its last component (a FIFO or device would block or never end)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | \
        getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ActclustError(f"{path} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def checksum_field(checksum: str) -> str:
    """The manifest key of a shard checksum algorithm (``"xxh3"`` -> ``"xxh3_128"``); a
    manifest key itself is returned as it is.

    Example:
        >>> checksum_field("sha256")
        'sha256'
        >>> checksum_field("md5")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: unknown shard checksum 'md5'; choose one of xxh3, sha256
    """
    if isinstance(checksum, str) and checksum in CHECKSUM_DIGITS:
        return checksum
    if not isinstance(checksum, str) or checksum not in CHECKSUMS:
        raise ActclustError(f"unknown shard checksum {checksum!r}; choose one of "
                            f"{', '.join(CHECKSUMS)}")
    return CHECKSUMS[checksum]


def store_checksum(manifest: dict) -> str:
    """The manifest key of the checksum a store's shards carry: the manifest's
    ``"checksum"``, or ``"sha256"`` for stores written before it existed.

    Example:
        >>> store_checksum({"schema_version": 1}), store_checksum({"checksum": "xxh3_128"})
        ('sha256', 'xxh3_128')
    """
    return manifest.get("checksum", "sha256")


def schema_for(field: str) -> int:
    """The schema version a new store with shard checksum ``field`` is written as: sha256
    stores stay schema 1, so older actclust still reads them."""
    return 1 if field == "sha256" else SCHEMA_VERSION


def write_manifest(root: Path, manifest: dict) -> None:
    atomic_write_bytes(Path(root) / MANIFEST, json.dumps(manifest, indent=1).encode())


def _is(value, kind) -> bool:
    if kind is int:  # JSON true is not a count
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def not_a_store_reason(obj) -> str | None:
    """Why parsed JSON is not a store manifest, or None when it is one.

    A manifest with ``"format": "actclust-store"`` is a store's; one without the key (written
    before it existed) must have every key of :data:`REQUIRED` with its type.

    Example:
        >>> not_a_store_reason({"name": "an extension", "manifest_version": 3})
        "it has no 'schema_version'"
        >>> not_a_store_reason({"format": "actclust-store", "schema_version": 1}) is None
        True
    """
    if not isinstance(obj, dict):
        return f"it holds a JSON {type(obj).__name__}, not an object"
    if "format" in obj:
        if obj["format"] != MARKER:
            return f"its format is {str(obj['format'])[:40]!r}, not {MARKER!r}"
        if not _is(obj.get("schema_version"), int):
            return "it has no integer 'schema_version'"
        return None
    for key, kind in REQUIRED.items():
        if key not in obj:
            return f"it has no {key!r}"
        if not _is(obj[key], kind):
            return f"its {key!r} is not a {'JSON ' + kind.__name__}"
    return None


def read_manifest(root, validate: bool = True) -> dict:
    """Read ``manifest.json``; errors say what is wrong with the store.

    The manifest must be a regular file inside ``root`` (not a symlink), be a store's (see
    :func:`not_a_store_reason`), have a schema this actclust reads and, with ``validate``,
    pass :func:`validate_manifest`.
    """
    root = Path(root)
    path = root / MANIFEST
    if not root.exists():
        raise ActclustError(f"store {root} does not exist")
    if not root.is_dir():
        raise ActclustError(f"{root} is not an actclust store: it is a file, not a directory")
    if not os.path.lexists(path):
        raise ActclustError(f"{root} is not an actclust store: it has no {MANIFEST}")
    try:
        with open_regular(path) as fh:
            manifest = json.loads(fh.read())
    except (OSError, ValueError, RecursionError) as err:
        if isinstance(err, ActclustError) or getattr(err, "errno", None) == errno.ELOOP:
            raise ActclustError(f"{path} is a symlink or not a regular file; a store's "
                                "manifest must be its own file") from None
        raise ActclustError(f"cannot read {path}: {str(err)[:200]}. The store is damaged; "
                            "capture it again with --overwrite") from None
    reason = not_a_store_reason(manifest)
    if reason:
        raise ActclustError(f"{root} is not an actclust store: {path} is not a store "
                            f"manifest ({reason})")
    version = manifest["schema_version"]
    if version > SCHEMA_VERSION:
        raise ActclustError(
            f"store {root} was written by actclust {manifest.get('actclust_version', '?')} "
            f"with store schema {version}; this actclust reads schema <= {SCHEMA_VERSION}. "
            "Upgrade actclust (pip install -U actclust).")
    if validate:
        validate_manifest(manifest, path)
    return manifest


def validate_manifest(m: dict, path=MANIFEST) -> None:
    """Check every key the store code relies on, raising :class:`ManifestError` naming it.

    Beyond types: layer names are plain directory names, shard files are ``NNNNN.npy``
    names of planned shards, each shard's rows are its plan entry's, and a complete layer
    lists every planned shard in order, so concatenated shards align with ``rows.parquet``.
    """
    def need(obj, key, kind, where):
        if not isinstance(obj, dict) or key not in obj:
            raise ManifestError(path, f"{where}{key} is missing")
        if not _is(obj[key], kind):
            raise ManifestError(path, f"{where}{key} is a {type(obj[key]).__name__}, "
                                      f"expected a {kind.__name__}")
        return obj[key]

    def count(obj, key, where):
        value = need(obj, key, int, where)
        if not 0 <= value < 2 ** 62:
            raise ManifestError(path, f"{where}{key} is out of range ({value})")
        return value

    for key, kind in REQUIRED.items():
        need(m, key, kind, "")
    if m["schema_version"] < 1:
        raise ManifestError(path, f"schema_version {m['schema_version']} is not a version")
    n_rows = count(m, "n_rows", "")
    for key in ("model", "dataset", "capture"):
        if key in m and not isinstance(m[key], dict):
            raise ManifestError(path, f"{key} is a {type(m[key]).__name__}, expected an object")
    if "model" in m and "name" in m["model"] and not isinstance(m["model"]["name"], str):
        raise ManifestError(path, "model.name is not a string")
    checksum = m.get("checksum", "sha256")
    if not isinstance(checksum, str) or checksum not in CHECKSUM_DIGITS:
        raise ManifestError(path, f"checksum {str(checksum)[:20]!r} is not one of "
                                  f"{', '.join(CHECKSUM_DIGITS)}")
    if checksum != "sha256" and m["schema_version"] < 2:
        raise ManifestError(path, f"checksum {checksum!r} needs schema_version 2 or more")
    plan_rows = []
    for i, entry in enumerate(m["plan"]):
        where = f"plan[{i}]."
        if not isinstance(entry, dict):
            raise ManifestError(path, f"plan[{i}] is not an object")
        if count(entry, "index", where) != i:
            raise ManifestError(path, f"{where}index is {entry['index']}, expected {i}")
        if count(entry, "doc_start", where) > count(entry, "doc_stop", where):
            raise ManifestError(path, f"{where}doc_start is after doc_stop")
        plan_rows.append(count(entry, "rows", where))
    if sum(plan_rows) != n_rows:
        raise ManifestError(path, f"the plan's shards hold {sum(plan_rows)} rows, n_rows "
                                  f"says {n_rows}")
    complete = m["complete"]
    done = set(range(len(plan_rows)))
    if not complete:
        listed = need(m, "shards_done", list, "")
        if not all(_is(i, int) and 0 <= i < len(plan_rows) for i in listed) or \
                len(set(listed)) != len(listed):
            raise ManifestError(path, "shards_done holds something other than distinct "
                                      "shard indices of the plan")
        done = set(listed)
    for name, info in m["layers"].items():
        try:
            check_name(name)
        except ActclustError as err:
            raise ManifestError(path, f"layers: {err}") from None
        where = f"layers.{name}."
        if not isinstance(info, dict):
            raise ManifestError(path, f"layers.{name} is not an object")
        dtype = need(info, "dtype", str, where)
        if dtype not in STORAGE_DTYPES:
            raise ManifestError(path, f"{where}dtype {dtype[:20]!r} is not one of "
                                      f"{', '.join(STORAGE_DTYPES)}")
        shape = info.get("shape")
        if shape is not None and not (isinstance(shape, list) and shape and
                                      all(_is(d, int) and d >= 0 for d in shape)):
            raise ManifestError(path, f"{where}shape is not a list of sizes")
        if complete and (shape is None or shape[0] != n_rows):
            raise ManifestError(path, f"{where}shape {shape} does not have n_rows ({n_rows}) "
                                      "rows")
        shards = need(info, "shards", list, where)
        seen = set()
        for j, shard in enumerate(shards):
            at = f"{where}shards[{j}]."
            if not isinstance(shard, dict):
                raise ManifestError(path, f"{where}shards[{j}] is not an object")
            file = need(shard, "file", str, at)
            if not SHARD_FILE.match(file):
                raise ManifestError(path, f"{at}file {file[:60]!r} is not a shard file name "
                                          "(NNNNN.npy)")
            index = shard_index(file)
            if index in seen or index not in done:
                raise ManifestError(path, f"{at}file {file!r} is not a finished shard of the "
                                          "plan, or is listed twice")
            seen.add(index)
            if count(shard, "rows", at) != plan_rows[index]:
                raise ManifestError(path, f"{at}rows is {shard['rows']}, the plan says "
                                          f"{plan_rows[index]}")
            if "bytes" in shard:
                count(shard, "bytes", at)
            # The store's own checksum is required; any other known one is checked alike.
            for field, digits in CHECKSUM_DIGITS.items():
                if (field == checksum or field in shard) and \
                        not _HEX[field].match(need(shard, field, str, at)):
                    raise ManifestError(path, f"{at}{field} is not {digits} hex digits")
        if seen != done:
            raise ManifestError(path, f"{where}shards does not list every finished shard")
        if complete and [s["file"] for s in shards] != [shard_name(i) for i in sorted(done)]:
            raise ManifestError(path, f"{where}shards are not in plan order")
