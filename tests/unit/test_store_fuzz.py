"""Property-based fuzzing of manifests, shard headers and the files of a store.

A small real store is mutated at random: keys of its manifest changed or removed, names
that point outside, symlinks to faithful copies outside (so following one would read the
"right" numbers), rewritten or truncated shards, row tables of the wrong length, FIFOs.
Whatever the mutation, reading either gives back exactly the original arrays or raises an
ActclustError: never another exception, never a file opened outside the store, never a
wrong array. Resuming an interrupted store obeys the same rule and never changes a file
outside it.

Not mutated here: the values inside a shard's data, or a valid shard copied into another
layer's folder. No header can tell those from the original; checksums do, and the last
property checks that ``verify`` reports every such change.
"""

import json
import os
import shutil
import stat
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from actclust import ActivationStore
from actclust.errors import ActclustError
from actclust.store import StoreWriter, verify_store
from tests.unit.test_store import LAYERS, make_store
from tests.unit.test_store_safety import interrupted, plan_docs, snapshot, write

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

HOSTILE = ["../../outside/layers/blocks.0.hook_out/00000.npy", "OUTSIDE", "00000.npy",
           "00001.npy", "00002.npy", "99999.npy", "..", ".", "", "/", "float16", "bfloat16",
           "actclust-store", "a\x00b", "layers", "../manifest.json", "blocks.1.hook_out"]
leaves = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                   st.floats(allow_nan=True), st.text(max_size=12), st.sampled_from(HOSTILE))
json_values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=6), inner, max_size=3), max_leaves=6)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A complete store and an interrupted one (1 of 3 shards), with their data."""
    root = tmp_path_factory.mktemp("fuzz")
    store, data = make_store(root / "complete", n_docs=10, shard_docs=4, dim=5)
    rows = store.rows.copy()
    interrupted(root / "partial", done=1, data=data)
    return root, data, rows


@pytest.fixture
def workdir(base):
    made = []

    def make(which: str) -> tuple[Path, Path]:
        """A fresh copy of a base store at ``case/store`` and a faithful copy of it at
        ``case/outside``: what a link or a path out of the store would reach."""
        case = Path(tempfile.mkdtemp(dir=base[0]))
        made.append(case)
        shutil.copytree(base[0] / which, case / "store", symlinks=True)
        shutil.copytree(base[0] / which, case / "outside", symlinks=True)
        (case / "outside" / "victim.txt").write_text("a file the store must never touch")
        return case / "store", case / "outside"

    yield make
    for case in made:
        shutil.rmtree(case, ignore_errors=True)


# --- mutations -------------------------------------------------------------------------


def key_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from key_paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from key_paths(value, prefix + (i,))


def parent_of(obj, path):
    for key in path[:-1]:
        obj = obj[key]
    return obj


def mutate_manifest(data, root: Path, outside: Path) -> None:
    path = root / "manifest.json"
    m = json.loads(path.read_text())
    op = data.draw(st.sampled_from(["set", "delete", "root", "file", "layer", "nudge"]))
    paths = list(key_paths(m))[1:]
    if op == "root":
        m = data.draw(json_values)
    elif op == "set":
        where = data.draw(st.sampled_from(paths))
        parent_of(m, where)[where[-1]] = data.draw(json_values)
    elif op == "delete":
        where = data.draw(st.sampled_from(paths))
        parent = parent_of(m, where)
        del parent[where[-1]]
    elif op == "file":
        layer = data.draw(st.sampled_from(list(m["layers"])))
        shards = m["layers"][layer]["shards"]
        if shards:
            name = data.draw(st.sampled_from(HOSTILE))
            if name == "OUTSIDE":  # an absolute path to a faithful copy
                name = str(outside / "layers" / layer / shards[0]["file"])
            data.draw(st.sampled_from(shards))["file"] = name
    elif op == "layer":
        old = data.draw(st.sampled_from(list(m["layers"])))
        new = data.draw(st.sampled_from(HOSTILE[5:] + ["other.layer"]))
        m["layers"] = {new if k == old else k: v for k, v in m["layers"].items()}
    else:
        ints = [p for p in paths if type(parent_of(m, p)[p[-1]]) is int]
        where = data.draw(st.sampled_from(ints))
        parent_of(m, where)[where[-1]] += data.draw(st.sampled_from([-3, -1, 1, 2, 64]))
    path.write_text(json.dumps(m))


def regular(path: Path) -> bool:
    return os.path.lexists(path) and stat.S_ISREG(os.lstat(path).st_mode)


def shard_files(root: Path) -> list[Path]:
    """The store's own shard files (never through a link: mutations stay in the store)."""
    found = []
    if (root / "layers").is_symlink():
        return []
    for folder, _, files in os.walk(root / "layers"):
        found += [Path(folder) / f for f in files if f.endswith(".npy")]
    return sorted(p for p in found if regular(p))


def replace_with_link(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    path.symlink_to(target)


def mutate_files(data, root: Path, outside: Path) -> None:
    op = data.draw(st.sampled_from([
        "header byte", "truncate", "append", "link shard", "link layer", "link layers",
        "link table", "resave", "short rows", "garbage table", "delete", "folder"]))
    shards = shard_files(root)
    shard = data.draw(st.sampled_from(shards)) if shards else None
    table = root / data.draw(st.sampled_from(["rows.parquet", "docs.parquet",
                                              "manifest.json"]))
    if shard is None and op not in ("link table", "garbage table", "short rows"):
        return
    if not regular(table) and op in ("garbage table", "short rows"):
        return
    if op == "header byte":
        raw = bytearray(shard.read_bytes())
        raw[data.draw(st.integers(0, 127))] = data.draw(st.integers(0, 255))
        shard.write_bytes(bytes(raw))
    elif op == "truncate":
        raw = shard.read_bytes()
        shard.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    elif op == "append":
        with open(shard, "ab") as fh:
            fh.write(data.draw(st.binary(min_size=1, max_size=64)))
    elif op == "link shard":
        replace_with_link(shard, outside / shard.relative_to(root))
    elif op == "link layer":
        replace_with_link(shard.parent, outside / shard.parent.relative_to(root))
    elif op == "link layers":
        replace_with_link(root / "layers", outside / "layers")
    elif op == "link table":
        if os.path.lexists(outside / table.name):
            replace_with_link(table, outside / table.name)
    elif op == "resave":
        array = np.load(shard)
        change = data.draw(st.sampled_from(["wide", "f8", "f2", "fortran", "short", "flat",
                                            "3d", "object"]))
        array = {"wide": lambda a: np.hstack([a, a[:, :1]]), "f8": lambda a: a.astype("<f8"),
                 "f2": lambda a: a.astype("<f2"), "fortran": np.asfortranarray,
                 "short": lambda a: a[:-1], "flat": lambda a: a.reshape(-1),
                 "3d": lambda a: a.reshape(*a.shape, 1),
                 "object": lambda a: a.astype(object)}[change](array)
        np.save(shard, array, allow_pickle=True)
        fix_manifest_entry(root, shard)  # checksum and size updated, as an attacker would
    elif op == "short rows":
        if regular(root / "rows.parquet"):
            rows = pd.read_parquet(root / "rows.parquet")
            cut = data.draw(st.integers(1, len(rows)))
            extra = data.draw(st.booleans())
            (pd.concat([rows, rows.iloc[:cut]]) if extra else rows.iloc[cut:]).to_parquet(
                root / "rows.parquet", index=False)
    elif op == "garbage table":
        table.write_bytes(data.draw(st.binary(max_size=200)))
    elif op == "delete":
        data.draw(st.sampled_from([shard, table])).unlink()
    elif op == "folder":
        shard.unlink()
        shard.mkdir()


def fix_manifest_entry(root: Path, shard: Path) -> None:
    import hashlib

    path = root / "manifest.json"
    if not regular(path):
        return
    m = json.loads(path.read_text())
    for entry in m["layers"][shard.parent.name]["shards"]:
        if entry["file"] == shard.name:
            import xxhash

            raw = shard.read_bytes()
            entry.update(bytes=len(raw), sha256=hashlib.sha256(raw).hexdigest(),
                         xxh3_128=xxhash.xxh3_128(raw).hexdigest())
    path.write_text(json.dumps(m))


def mutate(data, root: Path, outside: Path) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["manifest", "files"]))
        if kind == "manifest" and not regular(root / "manifest.json"):
            continue
        try:
            (mutate_manifest if kind == "manifest" else mutate_files)(data, root, outside)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError):
            pass  # an earlier mutation left nothing of this kind to change
    if data.draw(st.integers(0, 9)) == 0:  # last: a FIFO blocks whoever opens it to read
        victims = shard_files(root) + [p for p in (root / "rows.parquet", root / "docs.parquet",
                                                   root / "manifest.json") if regular(p)]
        if victims:
            victim = data.draw(st.sampled_from(victims))
            victim.unlink()
            os.mkfifo(victim)


# --- properties ------------------------------------------------------------------------


def assert_confined(opened, outside: Path) -> None:
    strays = [p for p in opened if p == outside or outside in p.parents]
    assert not strays, f"read outside the store: {strays}"


def read_everything(root: Path, data: dict, rows: pd.DataFrame) -> None:
    """Read each layer every way there is; each must be the original or an ActclustError."""
    try:
        store = ActivationStore(root)
        for name in store.layers:
            view = store.layer(name)
            if name not in data:  # a renamed layer: its folder does not exist
                with pytest.raises(ActclustError, match="is missing"):
                    view.to_numpy()
                continue
            np.testing.assert_array_equal(np.asarray(view), data[name])
            np.testing.assert_array_equal(view[5:17], data[name][5:17])
            np.testing.assert_array_equal(view[[29, 0, 13]], data[name][[29, 0, 13]])
            np.testing.assert_array_equal(np.concatenate(list(view.iter_batches(7))),
                                          data[name])
        table = store.rows
        assert table["doc_id"].tolist() == rows["doc_id"].tolist()
        assert table["row"].tolist() == list(range(len(rows)))
        event("read back exactly")
    except ActclustError:
        event("refused")


@FUZZ
@given(data=st.data())
def test_any_mutation_reads_back_the_original_or_is_refused(base, workdir, opened, data):
    _, arrays, rows = base
    root, outside = workdir("complete")
    mutate(data, root, outside)
    opened.clear()
    read_everything(root, arrays, rows)
    try:
        problems = verify_store(root)
        assert all(isinstance(p, str) and "\n" not in p for p in problems)
    except ActclustError:
        pass
    assert_confined(opened, outside)


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_resuming_a_mutated_store_finishes_it_truly_or_is_refused(base, workdir, opened,
                                                                  data):
    _, arrays, rows = base
    root, outside = workdir("partial")
    mutate(data, root, outside)
    before = snapshot(outside)
    plan, docs = plan_docs()
    opened.clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "capturing shard N again"
            with StoreWriter(root, {"model": {"name": "toy"}}, plan, LAYERS, docs, "float32",
                             resume=True, verify=data.draw(st.booleans())) as writer:
                write(writer, arrays, writer.pending_shards())
                writer.finalize()
    except ActclustError:
        event("resume refused")
    else:
        event("resumed to the end")
        store = ActivationStore(root)  # a finished store holds exactly the capture
        for name in LAYERS:
            np.testing.assert_array_equal(store.layer(name).to_numpy(), arrays[name])
        assert verify_store(root) == []
    assert_confined(opened, outside)
    assert snapshot(outside) == before


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_verify_sees_every_change_to_a_shards_values(base, workdir, data):
    root, _ = workdir("complete")
    shard = data.draw(st.sampled_from(shard_files(root)))
    raw = bytearray(shard.read_bytes())
    raw[data.draw(st.integers(128, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    shard.write_bytes(bytes(raw))
    label = f"layers/{shard.parent.name}/{shard.name}"
    assert verify_store(root) == [f"{label}: checksum mismatch (file changed or damaged)"]
