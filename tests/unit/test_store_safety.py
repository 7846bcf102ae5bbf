"""A store never touches what is not its own: each class of hostile input is refused with
an ActclustError, and every file outside the target is byte-identical afterwards."""

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from actclust import ActivationStore
from actclust.errors import ActclustError
from actclust.store import ShardWriter, StoreWriter, verify_store
from actclust.store.lock import StoreLock
from tests.unit.test_store import LAYERS, make_store
from tests.files import snapshot, write_shards

ROWS_PER_DOC = 3


def plan_docs(n_docs=10, shard_docs=4):
    plan = [{"index": i, "doc_start": lo, "doc_stop": min(lo + shard_docs, n_docs),
             "rows": (min(lo + shard_docs, n_docs) - lo) * ROWS_PER_DOC}
            for i, lo in enumerate(range(0, n_docs, shard_docs))]
    docs = pd.DataFrame({"doc_id": np.arange(n_docs), "text": [f"d{i}" for i in range(n_docs)]})
    return plan, docs


def layer_data(n_docs=10, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=(n_docs * ROWS_PER_DOC, dim)).astype(np.float32)
            for name in LAYERS}


def write(writer, data, shards):
    write_shards(writer, {name: data[name] for name in LAYERS}, shards, ROWS_PER_DOC)


def interrupted(root, done=1, data=None):
    """A store whose capture stopped after ``done`` shards; returns its plan, docs, data."""
    plan, docs = plan_docs()
    data = data if data is not None else layer_data()
    with StoreWriter(root, {"model": {"name": "toy"}}, plan, LAYERS, docs, "float32") as w:
        write(w, data, plan[:done])
    return plan, docs, data


def resume(root, plan, docs, data, verify=False):
    with StoreWriter(root, {"model": {"name": "toy"}}, plan, LAYERS, docs, "float32",
                     resume=True, verify=verify) as w:
        write(w, data, w.pending_shards())
        w.finalize()
    return ActivationStore(root)


def new_writer(root, **kwargs):
    plan, docs = plan_docs()
    return StoreWriter(root, {"model": {"name": "toy"}}, plan, LAYERS, docs, "float32",
                       **kwargs)


def edit_manifest(root, change):
    path = Path(root) / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def shard_path(root, layer=LAYERS[0], index=0):
    return Path(root) / "layers" / layer / f"{index:05d}.npy"


# --- a store is recognised by its content --------------------------------------------


def extension_folder(root: Path) -> Path:
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"manifest_version": 3, "name": "ext",
                                                    "version": "1.0"}))
    (root / "background.js").write_text("chrome.runtime.onInstalled.addListener(() => {});")
    return root


@pytest.mark.parametrize("mode", [{"overwrite": True}, {"resume": True}, {}])
def test_a_folder_with_a_foreign_manifest_is_never_written(tmp_path, mode):
    target = extension_folder(tmp_path / "ext")
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError, match="not an actclust store.*no 'schema_version'"):
        new_writer(target, **mode)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("content", ["[1, 2]", "{}", '{"schema_version": "1"}', "not json",
                                     '{"format": "other-tool", "schema_version": 1}'])
def test_manifests_that_are_not_a_stores_are_refused_on_open_and_overwrite(tmp_path, content):
    target = tmp_path / "s"
    target.mkdir()
    (target / "manifest.json").write_text(content)
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError):
        ActivationStore(target)
    with pytest.raises(ActclustError, match="not an actclust store|cannot read"):
        new_writer(target, overwrite=True)
    assert snapshot(tmp_path) == before


def test_new_manifests_carry_the_marker_and_old_ones_still_open(tmp_path):
    store, data = make_store(tmp_path / "s")
    assert store.manifest["format"] == "actclust-store"
    edit_manifest(tmp_path / "s", lambda m: m.pop("format"))  # as written before the marker
    old = ActivationStore(tmp_path / "s")
    np.testing.assert_array_equal(old.layer(LAYERS[1]).to_numpy(), data[LAYERS[1]])
    assert verify_store(tmp_path / "s") == []
    new_writer(tmp_path / "s", overwrite=True).close()  # an old store is still a store
    make_store(tmp_path / "t")
    edit_manifest(tmp_path / "t", lambda m: [m.pop("format"), m.pop("plan")])
    before = snapshot(tmp_path / "t")
    with pytest.raises(ActclustError, match="not a store manifest \\(it has no 'plan'\\)"):
        ActivationStore(tmp_path / "t")
    with pytest.raises(ActclustError, match="not an actclust store.*has no 'plan'"):
        new_writer(tmp_path / "t", overwrite=True)
    assert snapshot(tmp_path / "t") == before


@pytest.mark.parametrize("mode", [{"overwrite": True}, {"resume": True}, {}])
def test_the_empty_path_is_refused_even_in_a_store(tmp_path, monkeypatch, mode):
    make_store(tmp_path / "s")
    monkeypatch.chdir(tmp_path / "s")
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError, match="output path is empty"):
        new_writer("", **mode)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("which", ["dot", "cwd", "parent"])
def test_the_working_directory_and_its_parents_are_refused(tmp_path, monkeypatch, which):
    make_store(tmp_path / "s")
    (tmp_path / "s" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "s" / ("sub" if which == "parent" else ""))
    target = {"dot": ".", "cwd": str(tmp_path / "s"), "parent": ".."}[which]
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError, match="working directory or contains it"):
        new_writer(target, overwrite=True)
    assert snapshot(tmp_path) == before


def test_root_and_home_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ActclustError, match="filesystem root|working directory"):
        new_writer("/", overwrite=True)
    make_store(tmp_path / "home")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError, match="home directory"):
        new_writer(tmp_path / "home", overwrite=True)
    assert snapshot(tmp_path) == before


def test_a_symlinked_store_path_is_refused(tmp_path):
    make_store(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "dirlink").symlink_to(tmp_path)
    before = snapshot(tmp_path)
    for mode in ({"overwrite": True}, {"resume": True}, {}):
        with pytest.raises(ActclustError, match="is a symlink"):
            new_writer(tmp_path / "link", **mode)
    for mode in ({"overwrite": True}, {"resume": True}):  # a link on the way
        with pytest.raises(ActclustError, match="dirlink on its path is a symlink"):
            new_writer(tmp_path / "dirlink" / "real", **mode)
    assert snapshot(tmp_path) == before
    # reading through a link is harmless: the reader confines itself to the real folder
    assert len(ActivationStore(tmp_path / "link")) == 30
    # and a new store below a linked folder is fine (nothing is deleted)
    new_writer(tmp_path / "dirlink" / "fresh").close()


def test_overwrite_refuses_a_store_holding_anything_else(tmp_path):
    make_store(tmp_path / "s")
    for extra in ("notes.txt", "layers/blocks.0.hook_out/mine.csv", "layers/keep/00000.npy.bak",
                  "rows.parts/x.txt"):
        path = tmp_path / "s" / extra
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("precious")
        before = snapshot(tmp_path)
        with pytest.raises(ActclustError, match=f"holds {extra}.*not part of an actclust"):
            new_writer(tmp_path / "s", overwrite=True)
        assert snapshot(tmp_path) == before
        path.unlink()


def test_overwrite_refuses_a_symlink_inside_and_spares_its_target(tmp_path):
    make_store(tmp_path / "s")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "00000.npy").write_bytes(shard_path(tmp_path / "s").read_bytes())
    shard_path(tmp_path / "s", index=0).unlink()
    shard_path(tmp_path / "s", index=0).symlink_to(outside / "00000.npy")
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError, match="00000.npy \\(a symlink\\)|not part of"):
        new_writer(tmp_path / "s", overwrite=True)
    assert snapshot(tmp_path) == before


def test_overwrite_removes_exactly_the_store(tmp_path):
    make_store(tmp_path / "s", n_docs=20)
    (tmp_path / "neighbour.txt").write_text("mine")
    (tmp_path / "s" / ".rows.parquet.0123abcd.tmp").write_bytes(b"debris")
    plan, docs = plan_docs()
    data = layer_data(seed=5)
    with StoreWriter(tmp_path / "s", {"model": {"name": "toy"}}, plan, LAYERS, docs,
                     "float32", overwrite=True) as w:
        write(w, data, plan)
        w.finalize()
    assert sorted(snapshot(tmp_path / "s")) == [
        "docs.parquet", "layers", *[f"layers/{n}{f}" for n in LAYERS
                                    for f in ("", "/00000.npy", "/00001.npy", "/00002.npy")],
        "manifest.json", "rows.parquet"]
    store = ActivationStore(tmp_path / "s")
    np.testing.assert_array_equal(store.layer(LAYERS[0]).to_numpy(), data[LAYERS[0]])
    assert (tmp_path / "neighbour.txt").read_text() == "mine"


def test_a_file_as_output_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ActclustError, match="not a directory"):
        new_writer(tmp_path / "f", overwrite=True)
    assert (tmp_path / "f").read_text() == "x"


# --- confinement: nothing a manifest says leads outside the store ----------------------


def sentinel(tmp_path, like: Path) -> Path:
    path = tmp_path / "sentinel.npy"
    path.write_bytes(like.read_bytes())  # a shard that would read fine if followed
    return path


@pytest.mark.parametrize("file", ["../../../sentinel.npy", "/abs/sentinel.npy", "00000.npy/..",
                                  ".00000.npy", "00000.npy\x00", "0.npy", "00001.NPY", ""])
def test_shard_file_names_outside_the_pattern_are_refused(tmp_path, opened, file):
    make_store(tmp_path / "s")
    guard = sentinel(tmp_path, shard_path(tmp_path / "s"))
    edit_manifest(tmp_path / "s", lambda m: m["layers"][LAYERS[0]]["shards"][0].update(
        file=file.replace("/abs", str(tmp_path))))
    with pytest.raises(ActclustError, match="file .* is not a shard file name"):
        ActivationStore(tmp_path / "s").layer(LAYERS[0]).to_numpy()
    assert verify_store(tmp_path / "s")[0].startswith("manifest.json: layers.")
    assert (tmp_path / "s" / "manifest.json").resolve() in opened  # the spy sees reads
    assert guard.resolve() not in opened


@pytest.mark.parametrize("name", ["../../x", "..", ".", "", "a/b", "a\\b", ".hidden", "a\x00b",
                                  "x" * 300])
def test_layer_names_are_checked_when_read(tmp_path, name):
    make_store(tmp_path / "s")

    def rename(m):
        m["layers"] = {name: m["layers"][LAYERS[0]]}
    edit_manifest(tmp_path / "s", rename)
    with pytest.raises(ActclustError, match="cannot be used as a directory name"):
        ActivationStore(tmp_path / "s")


def test_layer_names_are_checked_when_written(tmp_path):
    plan, docs = plan_docs()
    with pytest.raises(ActclustError, match="cannot be used as a directory name"):
        StoreWriter(tmp_path / "s", {}, plan, ["../../x"], docs, "float32")
    assert not (tmp_path / "s").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("what", ["layer folder", "layers", "shard", "rows.parquet",
                                  "docs.parquet", "manifest.json"])
def test_symlinks_in_a_store_are_never_followed(tmp_path, opened, what):
    store, data = make_store(tmp_path / "s")
    root = tmp_path / "s"
    outside = tmp_path / "outside"
    target = {"layer folder": root / "layers" / LAYERS[0], "layers": root / "layers",
              "shard": shard_path(root), "rows.parquet": root / "rows.parquet",
              "docs.parquet": root / "docs.parquet",
              "manifest.json": root / "manifest.json"}[what]
    target.rename(outside)  # a faithful copy outside: following the link would "work"
    target.symlink_to(outside)
    with pytest.raises(ActclustError, match="symlink"):
        s = ActivationStore(root)
        s.layer(LAYERS[0]).to_numpy()
        s.rows
    assert not any(p == outside or outside in p.parents for p in opened)
    if what != "manifest.json":
        assert any("symlink" in p for p in verify_store(root))


def test_resume_never_deletes_in_a_symlinked_layer_folder(tmp_path):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("years of work")
    (elsewhere / "00007.npy").write_bytes(b"not listed: would be debris inside a store")
    layer_dir = root / "layers" / LAYERS[1]
    for path in layer_dir.iterdir():
        (elsewhere / path.name).write_bytes(path.read_bytes())
        path.unlink()
    layer_dir.rmdir()
    layer_dir.symlink_to(elsewhere)
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError, match="is a symlink"):
        resume(root, plan, docs, data)
    assert snapshot(tmp_path) == before


def test_resume_never_deletes_in_symlinked_row_parts(tmp_path):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root)
    elsewhere = tmp_path / "elsewhere"
    (root / "rows.parts").rename(elsewhere)
    (elsewhere / "00009.parquet").write_text("a user's file with a part-like name")
    (root / "rows.parts").symlink_to(elsewhere)
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError, match="is a symlink"):
        resume(root, plan, docs, data)
    assert snapshot(tmp_path) == before


def test_resume_refuses_unknown_files_instead_of_deleting_them(tmp_path):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root)
    (root / "layers" / LAYERS[0] / "notes.md").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError, match="notes.md is not part of the store"):
        resume(root, plan, docs, data)
    assert snapshot(tmp_path) == before


def test_resume_removes_only_its_own_debris(tmp_path):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root)
    debris = [root / "layers" / LAYERS[0] / "00002.npy",
              root / "layers" / LAYERS[0] / ".00001.npy.9f8e7d.tmp",
              root / "rows.parts" / "00001.parquet", root / ".manifest.json.abc123.tmp"]
    for path in debris:
        path.write_bytes(b"half written")
    (root / ".user.tmp").write_text("not ours: a different name")
    w = new_writer(root, resume=True)
    assert not any(p.exists() for p in debris)
    w.close()
    store = resume(root, plan, docs, data)
    assert (root / ".user.tmp").read_text() == "not ours: a different name"
    np.testing.assert_array_equal(store.layer(LAYERS[0]).to_numpy(), data[LAYERS[0]])


# --- trust no header -------------------------------------------------------------------


def rewrite_shard(path: Path, array: np.ndarray, root: Path, fix_manifest=True):
    np.save(path, array)
    if fix_manifest:  # the checksum updated to match, as an attacker would
        import hashlib

        digest = hashlib.sha256(path.read_bytes()).hexdigest()

        def update(m):
            for shard in m["layers"][path.parent.name]["shards"]:
                if shard["file"] == path.name:
                    shard.update(sha256=digest, bytes=path.stat().st_size)
        edit_manifest(root, update)


@pytest.mark.parametrize("change, message", [
    (lambda a: np.hstack([a, a[:, :1]]), "row shape \\[6\\], the layer is \\[5\\]"),
    (lambda a: a.astype(np.float64), "dtype <f8, the manifest says float32"),
    (lambda a: a.astype(np.float16), "dtype <f2, the manifest says float32"),
    (lambda a: np.asfortranarray(a), "stored in Fortran order"),
    (lambda a: a[:-1], "8 rows, the manifest says 9"),
    (lambda a: a.reshape(-1), "1 rows|rows, the manifest"),
    (lambda a: a.reshape(len(a), 5, 1), "row shape \\[5, 1\\], the layer is \\[5\\]"),
])
def test_a_shard_whose_header_disagrees_is_refused_before_use(tmp_path, change, message):
    store, data = make_store(tmp_path / "s", n_docs=10, shard_docs=3)
    odd = shard_path(tmp_path / "s", LAYERS[1], index=2)
    rewrite_shard(odd, change(np.load(odd)), tmp_path / "s")
    view = ActivationStore(tmp_path / "s").layer(LAYERS[1])
    with pytest.raises(ActclustError, match=f"00002.npy does not match the manifest: {message}"):
        np.asarray(view)
    for read in (lambda: view[0:2], lambda: view[[0]], lambda: next(view.iter_batches(4))):
        with pytest.raises(ActclustError, match="00002.npy"):
            read()
    problems = verify_store(tmp_path / "s")
    assert len(problems) == 1 and problems[0].startswith(f"layers/{LAYERS[1]}/00002.npy: ")
    np.testing.assert_array_equal(  # the other layer is untouched and reads fine
        ActivationStore(tmp_path / "s").layer(LAYERS[0]).to_numpy(), data[LAYERS[0]])


@pytest.mark.parametrize("cut", [-1, -40, 200, 100])
def test_truncated_or_padded_shards_are_refused(tmp_path, cut):
    make_store(tmp_path / "s")
    path = shard_path(tmp_path / "s", index=1)
    raw = path.read_bytes()
    path.write_bytes(raw[:cut] if cut < 0 or cut < 128 else raw + b"\0" * cut)
    with pytest.raises(ActclustError, match="00001.npy does not match the manifest"):
        ActivationStore(tmp_path / "s").layer(LAYERS[0]).to_numpy()
    assert len(verify_store(tmp_path / "s")) == 1


def test_a_pickled_object_shard_is_never_unpickled(tmp_path, monkeypatch):
    make_store(tmp_path / "s")
    path = shard_path(tmp_path / "s")
    ran = []

    class Payload:
        def __reduce__(self):
            return (ran.append, ("code ran",))

    np.save(path, np.array([Payload()] * 9, dtype=object).reshape(9, 1), allow_pickle=True)
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load called"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads called"))
    with pytest.raises(ActclustError, match="dtype \\|O"):
        ActivationStore(tmp_path / "s").layer(LAYERS[0]).to_numpy()
    assert any("dtype |O" in p for p in verify_store(tmp_path / "s"))
    assert ran == []


@pytest.mark.parametrize("header", [b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n",
                                    b"\x93NUMPY\x03\x00", b"garbage", b"",
                                    b"\x93NUMPY\x01\x00\xff\xff{'descr': '<f4'"])
def test_a_shard_with_a_broken_header_names_the_shard(tmp_path, header):
    make_store(tmp_path / "s")
    shard_path(tmp_path / "s", index=2).write_bytes(header)
    with pytest.raises(ActclustError, match="00002.npy does not match the manifest: not a valid"):
        ActivationStore(tmp_path / "s").layer(LAYERS[0]).to_numpy()
    assert verify_store(tmp_path / "s")[0].startswith(f"layers/{LAYERS[0]}/00002.npy: not a")


def test_the_row_table_must_match_the_layers_when_opened(tmp_path):
    make_store(tmp_path / "s")
    rows = pd.read_parquet(tmp_path / "s" / "rows.parquet")
    rows.iloc[:-2].to_parquet(tmp_path / "s" / "rows.parquet", index=False)
    with pytest.raises(ActclustError, match="rows.parquet has 28 rows, its layers 30"):
        ActivationStore(tmp_path / "s")
    assert verify_store(tmp_path / "s") == ["rows.parquet: 28 rows, manifest says 30"]
    (tmp_path / "s" / "rows.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ActclustError, match="not a readable parquet table"):
        ActivationStore(tmp_path / "s")
    (tmp_path / "s" / "rows.parquet").unlink()
    with pytest.raises(ActclustError, match="rows.parquet of the store is missing"):
        ActivationStore(tmp_path / "s")


@pytest.mark.parametrize("change, key", [
    (lambda m: m.pop("layers"), "layers"),
    (lambda m: m.update(n_rows="30"), "n_rows"),
    (lambda m: m.update(complete="yes"), "complete"),
    (lambda m: m.update(plan={}), "plan"),
    (lambda m: m["plan"][0].pop("rows"), "plan\\[0\\].rows"),
    (lambda m: m["layers"][LAYERS[0]].update(shards=None), f"layers.{LAYERS[0]}.shards"),
    (lambda m: m["layers"][LAYERS[0]].update(dtype="float64"), "dtype 'float64'"),
    (lambda m: m["layers"][LAYERS[0]].update(shape=[30, "5"]), "shape"),
    (lambda m: m["layers"][LAYERS[0]]["shards"][1].update(rows=True), "shards\\[1\\].rows"),
    (lambda m: m["layers"][LAYERS[0]]["shards"][1].update(sha256=7), "shards\\[1\\].sha256"),
    (lambda m: m["layers"][LAYERS[0]]["shards"].pop(), "every finished shard"),
    (lambda m: m["layers"][LAYERS[0]]["shards"].reverse(), "plan order"),
    (lambda m: m["layers"][LAYERS[0]]["shards"][0].update(file="00001.npy"), "listed twice"),
    (lambda m: m.update(model=[1]), "model"),
])
def test_malformed_manifests_name_the_key(tmp_path, change, key):
    make_store(tmp_path / "s")
    edit_manifest(tmp_path / "s", change)
    with pytest.raises(ActclustError, match=key):
        ActivationStore(tmp_path / "s")
    problems = verify_store(tmp_path / "s")
    assert len(problems) == 1 and problems[0].startswith("manifest.json: ")


def test_verify_reports_every_bad_shard(tmp_path):
    make_store(tmp_path / "s")
    shard_path(tmp_path / "s", LAYERS[0], 0).unlink()
    path = shard_path(tmp_path / "s", LAYERS[1], 2)
    np.save(path, np.zeros((6, 5), np.float64))
    raw = bytearray(shard_path(tmp_path / "s", LAYERS[1], 1).read_bytes())
    raw[-1] ^= 1
    shard_path(tmp_path / "s", LAYERS[1], 1).write_bytes(bytes(raw))
    assert verify_store(tmp_path / "s") == [
        f"layers/{LAYERS[0]}/00000.npy: missing",
        f"layers/{LAYERS[1]}/00001.npy: checksum mismatch (file changed or damaged)",
        f"layers/{LAYERS[1]}/00002.npy: dtype <f8, the manifest says float32 (<f4)"]


# --- resume tells the truth ------------------------------------------------------------


def test_a_missing_finished_shard_is_captured_again(tmp_path):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root, done=2)
    shard_path(root, LAYERS[1], 0).unlink()
    with pytest.warns(UserWarning, match="finished shard 0 is damaged.*00000.npy: missing"):
        w = StoreWriter(root, {"model": {"name": "toy"}}, plan, LAYERS, docs, "float32",
                        resume=True)
    assert [s["index"] for s in w.pending_shards()] == [0, 2]
    assert not shard_path(root, LAYERS[0], 0).exists()  # its twin goes too
    write(w, data, w.pending_shards())
    w.finalize()
    store = ActivationStore(root)
    assert verify_store(root) == []
    for name in LAYERS:
        np.testing.assert_array_equal(store.layer(name).to_numpy(), data[name])


@pytest.mark.parametrize("damage", ["truncate", "row part", "widen"])
def test_damaged_finished_shards_are_captured_again(tmp_path, damage):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root, done=2)
    if damage == "truncate":
        path = shard_path(root, LAYERS[0], 1)
        path.write_bytes(path.read_bytes()[:-4])
    elif damage == "row part":
        (root / "rows.parts" / "00001.parquet").unlink()
    else:
        np.save(shard_path(root, LAYERS[1], 1), np.zeros((12, 6), np.float32))
    with pytest.warns(UserWarning, match="finished shard 1 is damaged"):
        store = resume(root, plan, docs, data)
    assert verify_store(root) == []
    for name in LAYERS:
        np.testing.assert_array_equal(store.layer(name).to_numpy(), data[name])


def test_verify_on_resume_recomputes_checksums(tmp_path):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root, done=2)
    path = shard_path(root, LAYERS[0], 0)
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 0x40  # the header still agrees: only a checksum sees it
    path.write_bytes(bytes(raw))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = StoreWriter(root, {"model": {"name": "toy"}}, plan, LAYERS, docs, "float32",
                        resume=True)
        assert [s["index"] for s in w.pending_shards()] == [2]  # not seen without verify
        w.close()
    with pytest.warns(UserWarning, match="shard 0 is damaged.*checksum mismatch"):
        store = resume(root, plan, docs, data, verify=True)
    np.testing.assert_array_equal(store.layer(LAYERS[0]).to_numpy(), data[LAYERS[0]])


def test_a_store_is_never_marked_complete_over_a_missing_shard(tmp_path):
    root = tmp_path / "s"
    plan, docs = plan_docs()
    data = layer_data()
    w = StoreWriter(root, {"model": {"name": "toy"}}, plan, LAYERS, docs, "float32")
    write(w, data, plan)
    shard_path(root, LAYERS[1], 1).unlink()  # lost between the commit and the end
    with pytest.raises(ActclustError, match="cannot complete.*00001.npy: missing"):
        w.finalize()
    w.close()
    assert json.loads((root / "manifest.json").read_text())["complete"] is False
    with pytest.warns(UserWarning, match="shard 1 is damaged"):
        store = resume(root, plan, docs, data)
    np.testing.assert_array_equal(store.layer(LAYERS[1]).to_numpy(), data[LAYERS[1]])


def test_resuming_a_complete_but_damaged_store_is_refused(tmp_path):
    make_store(tmp_path / "s")
    shard_path(tmp_path / "s", LAYERS[0], 1).unlink()
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError, match="is complete but .*00001.npy is damaged.*--overwrite"):
        new_writer(tmp_path / "s", resume=True)
    assert snapshot(tmp_path) == before


# --- one writer at a time --------------------------------------------------------------


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root)
    first = StoreWriter(root, {"model": {"name": "toy"}}, plan, LAYERS, docs, "float32",
                        resume=True)
    holder = json.loads((root / ".lock").read_text())
    assert holder["pid"] == os.getpid() and holder["host"]
    before = snapshot(root)
    for mode in ({"resume": True}, {"overwrite": True}):
        with pytest.raises(ActclustError, match=f"being written by another writer \\(pid "
                                                f"{os.getpid()} on "):
            new_writer(root, **mode)
    assert snapshot(root) == before
    write(first, data, first.pending_shards())
    first.finalize()
    assert not (root / ".lock").exists() and not first.locked
    new_writer(root, overwrite=True).close()


def test_targets_are_checked_before_any_work(tmp_path):
    from actclust.store.writer import check_store_target

    root = tmp_path / "s"
    plan, docs, data = interrupted(root)
    extension_folder(tmp_path / "ext")
    before = snapshot(tmp_path)
    assert check_store_target(root, resume=True) == root
    assert check_store_target(tmp_path / "new") == tmp_path / "new"
    with pytest.raises(ActclustError, match="not an actclust store"):
        check_store_target(tmp_path / "ext", overwrite=True)
    with pytest.raises(ActclustError, match="already exists; pass --resume"):
        check_store_target(root)
    with new_writer(root, resume=True):
        with pytest.raises(ActclustError, match=f"another writer \\(pid {os.getpid()}"):
            check_store_target(root, resume=True)
    assert snapshot(tmp_path) == before


def test_the_lock_is_released_on_close_abort_and_errors(tmp_path):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root)
    with pytest.raises(ZeroDivisionError):
        with new_writer(root, resume=True) as w:
            w.begin_shard(w.pending_shards()[0])
            1 / 0
    assert not any(p.name.endswith(".tmp") for p in root.rglob("*"))
    w = new_writer(root, resume=True)
    w.abort_shard()  # what capture calls when a run fails
    w = new_writer(root, resume=True)
    w.close()
    with pytest.raises(ActclustError, match="writer of .* is closed"):
        w.begin_shard(plan[1])
    w = new_writer(root, resume=True)
    del w  # garbage collected: the descriptor goes and so does the lock
    resume(root, plan, docs, data)
    assert not (root / ".lock").exists()


HOLD = """
import sys, time
from actclust.store.lock import StoreLock
lock = StoreLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_writer_in_another_process_is_named_and_a_killed_one_frees_the_store(tmp_path):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "locked"
        before = snapshot(tmp_path)
        with pytest.raises(ActclustError, match=f"another writer \\(pid {proc.pid} on "):
            resume(root, plan, docs, data)
        with pytest.raises(ActclustError, match=f"pid {proc.pid}"):
            new_writer(root, overwrite=True)
        assert snapshot(tmp_path) == before
    finally:
        proc.kill()
        proc.wait()
    store = resume(root, plan, docs, data)  # the kernel dropped the dead holder's lock
    np.testing.assert_array_equal(store.layer(LAYERS[0]).to_numpy(), data[LAYERS[0]])


def test_a_stale_lock_file_from_a_killed_writer_does_not_block(tmp_path):
    root = tmp_path / "s"
    plan, docs, data = interrupted(root)
    (root / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "started": "x"}))
    resume(root, plan, docs, data)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / ".lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ActclustError, match="symlink"):
        StoreLock(tmp_path / "x").acquire()
    assert not (tmp_path / "elsewhere").exists()


def test_shard_temporaries_are_unique_per_writer(tmp_path):
    a = ShardWriter(tmp_path / "00000.npy", 2, "float32")
    b = ShardWriter(tmp_path / "00000.npy", 2, "float32")
    assert a.tmp != b.tmp and a.tmp.name.startswith(".00000.npy.")
    a.append(np.ones((2, 3), np.float32))
    b.append(np.zeros((2, 3), np.float32))  # interleaved: neither writes into the other
    info_a = a.commit()
    np.testing.assert_array_equal(np.load(tmp_path / "00000.npy"), np.ones((2, 3)))
    info_b = b.commit()
    np.testing.assert_array_equal(np.load(tmp_path / "00000.npy"), np.zeros((2, 3)))
    assert info_a["xxh3_128"] != info_b["xxh3_128"]
    assert [p.name for p in tmp_path.iterdir()] == ["00000.npy"]


def test_the_lock_waits_for_nobody_and_leaves_no_file(tmp_path):
    start = time.perf_counter()
    first = StoreLock(tmp_path).acquire()
    with pytest.raises(ActclustError):
        StoreLock(tmp_path).acquire()
    assert time.perf_counter() - start < 2
    first.release()
    assert list(tmp_path.iterdir()) == []
