"""The merge of a parallel capture's part stores, on toy stores written by the real writer
(no model, no Ray): the merged store equals one written whole, shards are moved (same
inode), a merge stopped half way is refused as incomplete and finished by a second run, and
nothing that is not provably a part of this capture is entered, moved or deleted."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from actclust import ActivationStore
from actclust.errors import ActclustError
from actclust.store import StoreWriter, verify_store
from actclust.store import format as fmt
from actclust.store.merge import (PART_KEY, PARTS_DIR, clear_target, merge_parts,
                                  part_marker, part_path, read_parts_record, target_state,
                                  write_parts_record)

LAYERS = ["blocks.0.hook_out", "blocks.1.hook_out"]
HEADER = {"model": {"name": "toy", "config_hash": "abc"},
          "dataset": {"name": "toy", "fingerprint": "f" * 64, "n_docs": 12},
          "capture": {"layers": LAYERS, "pool": "none", "storage_dtype": "float32"}}
ROWS_PER_DOC = np.array([3, 1, 4, 1, 5, 2, 6, 2, 3, 1, 2, 2])
PARTS = [{"index": 0, "doc_start": 0, "doc_stop": 5}, {"index": 1, "doc_start": 5, "doc_stop": 9},
         {"index": 2, "doc_start": 9, "doc_stop": 12}]
SHARD_ROWS = 6


def shard_plan(rows, shard_rows=SHARD_ROWS):
    """The single-process capture's greedy plan (as ``capture._shard_plan``)."""
    shards, start, count = [], 0, 0
    for i, r in enumerate(rows.tolist()):
        if count and count + r > shard_rows:
            shards.append({"index": len(shards), "doc_start": start, "doc_stop": i, "rows": count})
            start, count = i, 0
        count += r
    shards.append({"index": len(shards), "doc_start": start, "doc_stop": len(rows), "rows": count})
    return shards


def toy_data(dim=4):
    rng = np.random.default_rng(0)
    n = int(ROWS_PER_DOC.sum())
    data = {name: rng.normal(size=(n, dim)).astype(np.float32) for name in LAYERS}
    docs = pd.DataFrame({"doc_id": np.arange(12, dtype=np.int64),
                         "text": [f"doc {i}" for i in range(12)],
                         "topic": [["a", "b", "c"][i % 3] for i in range(12)]})
    rows = pd.DataFrame({"doc_id": np.repeat(np.arange(12, dtype=np.int64), ROWS_PER_DOC),
                         "position": np.concatenate([np.arange(r) for r in ROWS_PER_DOC]
                                                    ).astype(np.int32)})
    return data, docs, rows


def write_store(root, header, lo, hi, data, docs, rows):
    """Documents ``lo:hi`` as a store of their own, through the real writer."""
    offsets = np.concatenate([[0], np.cumsum(ROWS_PER_DOC)])
    plan = shard_plan(ROWS_PER_DOC[lo:hi])
    part_docs = docs.iloc[lo:hi].reset_index(drop=True)
    with StoreWriter(root, header, plan, LAYERS, part_docs, "float32") as writer:
        for shard in writer.pending_shards():
            writer.begin_shard(shard)
            a, b = offsets[lo + shard["doc_start"]], offsets[lo + shard["doc_stop"]]
            writer.append({n: data[n][a:b] for n in LAYERS},
                          rows.iloc[a:b].reset_index(drop=True))
            writer.commit_shard()
        writer.finalize()


def dataset_header(part):
    return {**HEADER, "dataset": {"name": "toy", "n_docs": part["doc_stop"] - part["doc_start"],
                                  PART_KEY: part_marker(part, len(PARTS))}}


@pytest.fixture
def parts(tmp_path):
    """``tmp_path/out`` holding three complete part stores and their record."""
    data, docs, rows = toy_data()
    out = tmp_path / "out"
    out.mkdir()
    offsets = np.concatenate([[0], np.cumsum(ROWS_PER_DOC)])
    record = write_parts_record(out, [dict(p, rows=int(offsets[p["doc_stop"]] -
                                                       offsets[p["doc_start"]]))
                                      for p in PARTS], HEADER)
    for part in PARTS:
        write_store(part_path(out, part["index"]), dataset_header(part), part["doc_start"],
                    part["doc_stop"], data, docs, rows)
    return out, record, (data, docs, rows)


def inodes(root):
    return {(p.parent.name, p.name): p.stat().st_ino for p in root.rglob("*.npy")}


def test_the_merged_store_equals_one_written_whole(parts, tmp_path):
    out, record, (data, docs, rows) = parts
    moved = {}
    for part in PARTS:
        for (layer, file), ino in inodes(part_path(out, part["index"])).items():
            moved[ino] = (layer, part["index"], file)
    merge_parts(out, HEADER, record)
    store = ActivationStore(out)
    for name in LAYERS:
        assert np.array_equal(store.layer(name).to_numpy(), data[name])
    pd.testing.assert_frame_equal(store.docs, docs)
    pd.testing.assert_frame_equal(store.rows.to_pandas().drop(columns=["text", "topic"]),
                                  rows.assign(row=np.arange(len(rows))).iloc[:, [2, 0, 1]])
    assert verify_store(out) == []
    assert not (out / PARTS_DIR).exists()
    # every shard was moved, not copied: the merged files are the parts' own inodes
    assert set(inodes(out).values()) == set(moved)
    # the plan: each part's shards in turn, with document ranges of the whole
    plan = store.manifest["plan"]
    assert [p["index"] for p in plan] == list(range(len(plan)))
    assert plan[0]["doc_start"] == 0 and plan[-1]["doc_stop"] == 12
    assert all(a["doc_stop"] == b["doc_start"] for a, b in zip(plan, plan[1:]))
    for key in HEADER:
        assert store.manifest[key] == HEADER[key]
    whole = tmp_path / "whole"
    write_store(whole, HEADER, 0, 12, data, docs, rows)
    assert ActivationStore(whole).manifest["n_rows"] == store.manifest["n_rows"]


def test_parts_aligned_with_the_shards_give_the_same_plan_as_one_store(tmp_path):
    data, docs, rows = toy_data()
    whole_plan = shard_plan(ROWS_PER_DOC)
    # cut the documents at shard boundaries of the whole plan
    cuts = [whole_plan[0]["doc_start"], whole_plan[2]["doc_start"], 12]
    parts = [{"index": i, "doc_start": a, "doc_stop": b, "rows": int(ROWS_PER_DOC[a:b].sum())}
             for i, (a, b) in enumerate(zip(cuts, cuts[1:]))]
    out = tmp_path / "out"
    out.mkdir()
    record = write_parts_record(out, parts, HEADER)
    for p in parts:
        header = {**HEADER, "dataset": {PART_KEY: part_marker(p, len(parts))}}
        write_store(part_path(out, p["index"]), header, p["doc_start"], p["doc_stop"],
                    data, docs, rows)
    merge_parts(out, HEADER, record)
    write_store(tmp_path / "whole", HEADER, 0, 12, data, docs, rows)
    merged, whole = ActivationStore(out).manifest, ActivationStore(tmp_path / "whole").manifest
    assert merged["plan"] == whole["plan"]
    for name in LAYERS:
        strip = [{k: v for k, v in s.items()} for s in whole["layers"][name]["shards"]]
        assert merged["layers"][name]["shards"] == strip
    assert {k: v for k, v in merged.items() if k != "created"} == \
        {k: v for k, v in whole.items() if k != "created"}


def test_every_field_of_a_shard_entry_is_carried_over(parts):
    # A writer may name its checksums otherwise (or add fields): the merge copies each
    # entry whole and changes only its file name.
    out, record, _ = parts
    path = part_path(out, 1) / fmt.MANIFEST
    manifest = json.loads(path.read_text())
    for info in manifest["layers"].values():
        for shard in info["shards"]:
            shard["xxh3"] = f"{shard['rows']:016x}"
    path.write_text(json.dumps(manifest))
    merge_parts(out, HEADER, record)
    for name, info in ActivationStore(out).manifest["layers"].items():
        carried = [s for s in info["shards"] if "xxh3" in s]
        assert [{k: v for k, v in s.items() if k != "file"} for s in carried] == \
            [{k: v for k, v in s.items() if k != "file"}
             for s in manifest["layers"][name]["shards"]]
        assert len(info["shards"]) > len(carried)


def test_a_merge_stopped_half_way_is_incomplete_and_finishes_on_a_second_run(parts,
                                                                             monkeypatch):
    out, record, (data, docs, _) = parts
    real, calls = os.replace, []

    def failing(src, dst, *args, **kwargs):
        if str(src).endswith(".npy"):
            calls.append(src)
            if len(calls) == 4:
                raise OSError(5, "Input/output error")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        merge_parts(out, HEADER, record)
    monkeypatch.setattr(os, "replace", real)
    assert len(list((out / fmt.LAYERS_DIR).rglob("*.npy"))) == 3  # three moved, then it failed
    with pytest.raises(ActclustError, match="incomplete"):
        ActivationStore(out)
    assert any("incomplete" in p for p in verify_store(out))
    # a capture without --resume or --overwrite leaves it alone
    with pytest.raises(ActclustError, match="interrupted parallel capture"):
        target_state(out, resume=False, overwrite=False)
    assert target_state(out, resume=True, overwrite=False)[1] == "merging"
    merge_parts(out, HEADER, read_parts_record(out))
    store = ActivationStore(out)
    for name in LAYERS:
        assert np.array_equal(store.layer(name).to_numpy(), data[name])
    pd.testing.assert_frame_equal(store.docs, docs)
    assert verify_store(out) == []
    assert not (out / PARTS_DIR).exists()


def test_a_stopped_merge_never_leaves_a_store_that_looks_complete(parts, monkeypatch):
    out, record, _ = parts
    real = os.replace
    for k in range(1, 12):
        calls = []

        def failing(src, dst, *args, **kwargs):
            calls.append(src)
            if len(calls) == k:
                raise OSError(5, "Input/output error")
            return real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", failing)
        try:
            merge_parts(out, HEADER, read_parts_record(out))
        except OSError:
            pass
        monkeypatch.setattr(os, "replace", real)
        if (out / fmt.MANIFEST).exists() and fmt.read_manifest(out)["complete"]:
            break
        if (out / fmt.MANIFEST).exists():
            with pytest.raises(ActclustError, match="incomplete"):
                ActivationStore(out)
    assert verify_store(out) == []


def test_a_part_store_from_elsewhere_is_refused_and_nothing_moves(parts, tmp_path):
    out, record, (data, docs, rows) = parts
    stranger = part_path(out, 1)
    for path in sorted(stranger.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    stranger.rmdir()
    write_store(stranger, HEADER, 5, 9, data, docs, rows)  # a store, but not marked as part 1
    before = inodes(out)
    with pytest.raises(ActclustError, match="is not part 1 of this capture"):
        merge_parts(out, HEADER, record)
    assert inodes(out) == before and not (out / fmt.MANIFEST).exists()
    with pytest.raises(ActclustError, match="is not part 1 of this capture"):
        clear_target(out)
    assert inodes(out) == before


def test_a_parts_folder_without_a_record_is_not_entered(tmp_path):
    out = tmp_path / "out"
    (out / PARTS_DIR).mkdir(parents=True)
    (out / PARTS_DIR / "notes.txt").write_text("mine")
    with pytest.raises(ActclustError, match="was not written by an actclust capture"):
        read_parts_record(out)
    (out / PARTS_DIR / "parts.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ActclustError, match="was not written by an actclust capture"):
        clear_target(out)
    assert (out / PARTS_DIR / "notes.txt").read_text() == "mine"


def test_unknown_files_in_the_parts_folder_are_never_deleted(parts):
    out, record, _ = parts
    (out / PARTS_DIR / "notes.txt").write_text("mine")
    with pytest.raises(ActclustError, match="notes.txt, which this capture did not write"):
        clear_target(out)
    assert (out / PARTS_DIR / "notes.txt").exists() and part_path(out, 0).exists()
    # the merge itself completes; the parts folder stays, with a warning
    with pytest.warns(UserWarning, match="parts folder was not removed"):
        merge_parts(out, HEADER, record)
    assert verify_store(out) == [] and (out / PARTS_DIR / "notes.txt").exists()


def test_a_symlinked_part_or_shard_is_never_followed(parts, tmp_path):
    out, record, (data, docs, rows) = parts
    elsewhere = tmp_path / "elsewhere"
    part_path(out, 2).rename(elsewhere)
    part_path(out, 2).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ActclustError, match="symlink"):
        merge_parts(out, HEADER, record)
    part_path(out, 2).unlink()
    elsewhere.rename(part_path(out, 2))
    shard = part_path(out, 1) / fmt.LAYERS_DIR / LAYERS[0] / "00000.npy"
    shard.rename(tmp_path / "real.npy")
    shard.symlink_to(tmp_path / "real.npy")
    with pytest.raises(ActclustError, match="symlink"):
        merge_parts(out, HEADER, record)
    assert (tmp_path / "real.npy").exists()
    assert not any(p.is_symlink() for p in (out / fmt.LAYERS_DIR).rglob("*"))


def test_the_target_rules(parts, tmp_path):
    out, record, _ = parts
    with pytest.raises(ActclustError, match="interrupted parallel capture; pass --resume"):
        target_state(out, resume=False, overwrite=False)
    assert target_state(out, resume=True, overwrite=False)[1] == "parts"
    with pytest.raises(ActclustError, match="choose one of"):
        target_state(out, resume=True, overwrite=True)
    merge_parts(out, HEADER, record)
    with pytest.raises(ActclustError, match="already exists; pass --resume"):
        target_state(out, resume=False, overwrite=False)
    assert target_state(out, resume=True, overwrite=False)[1] == "complete"
    assert target_state(tmp_path / "new", resume=False, overwrite=False)[1] == "absent"
    with pytest.raises(ActclustError, match="inside the store"):
        target_state(out / "inner", resume=False, overwrite=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    with pytest.raises(ActclustError, match="not an actclust store"):
        target_state(foreign, resume=False, overwrite=True)
    clear_target(out)
    assert list(out.iterdir()) == []
