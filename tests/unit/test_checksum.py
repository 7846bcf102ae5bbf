"""Shard checksums: xxh3_128 (the default) and sha256 stores, and stores from before xxh3."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xxhash

from actclust import ActivationStore
from actclust.errors import ActclustError
from actclust.store import StoreWriter, verify_store
from actclust.store import format as fmt
from actclust.sweep.cells import digest, layer_fingerprint
from tests.files import write_shards

LAYERS = ["a", "b"]
ROWS_PER_DOC = 2
HEADER = {"model": {"name": "toy"}, "dataset": {}, "capture": {}}


def plan_docs(n_docs=6, shard_docs=2):
    plan = [{"index": i, "doc_start": lo, "doc_stop": lo + shard_docs,
             "rows": shard_docs * ROWS_PER_DOC} for i, lo in enumerate(range(0, n_docs,
                                                                            shard_docs))]
    return plan, pd.DataFrame({"doc_id": np.arange(n_docs)})


DATA = {name: np.random.default_rng(i).normal(size=(12, 4)).astype(np.float32)
        for i, name in enumerate(LAYERS)}


def write(writer, shards):
    write_shards(writer, DATA, shards, ROWS_PER_DOC)


def store(root, done=None, **kwargs):
    """A store of ``DATA`` (complete, or stopped after ``done`` shards)."""
    plan, docs = plan_docs()
    with StoreWriter(root, HEADER, plan, LAYERS, docs, "float32",
                     **kwargs) as w:
        write(w, w.pending_shards()[:done])
        if done is None:
            w.finalize()
    return root


def manifest(root) -> dict:
    return json.loads((Path(root) / "manifest.json").read_text())


def edit(root, change) -> None:
    m = manifest(root)
    change(m)
    (Path(root) / "manifest.json").write_text(json.dumps(m))


def flip(root, layer="b", index=1, at=-3) -> None:
    """Change one value byte: the header and size still agree, only a checksum sees it."""
    path = Path(root) / "layers" / layer / f"{index:05d}.npy"
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x10
    path.write_bytes(bytes(raw))


def as_old_store(m: dict) -> None:
    """A manifest as actclust wrote it before xxh3: schema 1, no "checksum" key."""
    m["schema_version"] = 1
    m.pop("checksum")


@pytest.mark.parametrize("checksum, field, digits, schema, hash_file", [
    ("xxh3", "xxh3_128", 32, 2, lambda b: xxhash.xxh3_128(b).hexdigest()),
    ("sha256", "sha256", 64, 1, lambda b: hashlib.sha256(b).hexdigest()),
])
def test_both_checksums_are_recorded_and_verify(tmp_path, checksum, field, digits, schema,
                                                 hash_file):
    root = store(tmp_path / "s", checksum=checksum)
    m = manifest(root)
    assert m["checksum"] == field and m["schema_version"] == schema
    for name in LAYERS:
        for shard in m["layers"][name]["shards"]:
            assert set(shard) == {"file", "rows", "bytes", field}
            assert len(shard[field]) == digits
            raw = (root / "layers" / name / shard["file"]).read_bytes()
            assert shard[field] == hash_file(raw)
    assert verify_store(root) == []
    np.testing.assert_array_equal(ActivationStore(root).layer("b").to_numpy(), DATA["b"])


@pytest.mark.parametrize("checksum", ["xxh3", "sha256"])
@pytest.mark.parametrize("at", [-3, 20, 150])  # a value, the header's dict, a middle value
def test_a_flipped_byte_is_caught_by_either_checksum(tmp_path, checksum, at):
    root = store(tmp_path / "s", checksum=checksum)
    flip(root, at=at)
    assert verify_store(root) == ["layers/b/00001.npy: checksum mismatch (file changed or "
                                  "damaged)"] or at == 20  # a header byte may fail earlier
    assert any("00001.npy" in p for p in verify_store(root))


def test_every_listed_checksum_must_agree(tmp_path):
    root = store(tmp_path / "s")  # xxh3, with a wrong sha256 beside it
    edit(root, lambda m: m["layers"]["a"]["shards"][0].update(sha256="0" * 64))
    assert verify_store(root) == ["layers/a/00000.npy: checksum mismatch (file changed or "
                                  "damaged)"]


def test_an_old_sha256_store_opens_verifies_and_resumes(tmp_path):
    root = store(tmp_path / "s", done=2, checksum="sha256")
    edit(root, as_old_store)
    fingerprint = layer_fingerprint(manifest(root), "a")
    plan, docs = plan_docs()
    # The default is xxh3, but a resumed store keeps the checksum it was started with.
    with StoreWriter(root, HEADER, plan, LAYERS, docs, "float32",
                     resume=True, verify=True) as w:
        assert [s["index"] for s in w.pending_shards()] == [2]
        write(w, w.pending_shards())
        w.finalize()
    m = manifest(root)
    assert m["schema_version"] == 1 and "checksum" not in m
    assert all(set(s) == {"file", "rows", "bytes", "sha256"}
               for s in m["layers"]["a"]["shards"])
    assert verify_store(root) == []
    np.testing.assert_array_equal(ActivationStore(root).layer("a").to_numpy(), DATA["a"])
    # The sweep keys cells of such a store by the shards' sha256, as before xxh3.
    shards = m["layers"]["a"]["shards"]
    assert fingerprint == layer_fingerprint({**m, "layers": {"a": {"shards": shards[:2]}}},
                                            "a")
    assert layer_fingerprint(m, "a") == digest({
        "model": ["toy", None], "dataset": None, "capture": {},
        "shards": [s["sha256"] for s in shards]})
    flip(root, layer="a", index=0)
    assert verify_store(root) == ["layers/a/00000.npy: checksum mismatch (file changed or "
                                  "damaged)"]


def test_resume_with_verify_catches_a_flipped_byte_in_an_old_store(tmp_path):
    root = store(tmp_path / "s", done=2, checksum="sha256")
    edit(root, as_old_store)
    flip(root, layer="b", index=0)
    plan, docs = plan_docs()
    with pytest.warns(UserWarning, match="shard 0 is damaged.*checksum mismatch"):
        with StoreWriter(root, HEADER, plan, LAYERS, docs, "float32",
                         resume=True, verify=True) as w:
            assert [s["index"] for s in w.pending_shards()] == [0, 2]
            write(w, w.pending_shards())
            w.finalize()
    assert verify_store(root) == []
    np.testing.assert_array_equal(ActivationStore(root).layer("b").to_numpy(), DATA["b"])


def test_fingerprints_follow_the_checksum_and_old_keys_stay(tmp_path):
    m = {"model": {"name": "m"}, "dataset": {}, "capture": {},
         "layers": {"h": {"shards": [{"sha256": "ab" * 32}]}}}
    # The formula of stores from before xxh3: the list of the shards' sha256.
    assert layer_fingerprint(m, "h") == digest({
        "model": ["m", None], "dataset": None, "capture": {}, "shards": ["ab" * 32]})
    x = {**m, "layers": {"h": {"shards": [{"xxh3_128": "cd" * 16}]}}}
    y = {**m, "layers": {"h": {"shards": [{"xxh3_128": "ce" * 16}]}}}
    assert len({layer_fingerprint(m, "h"), layer_fingerprint(x, "h"),
                layer_fingerprint(y, "h")}) == 3


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(xxh3_128="ab" * 15), "xxh3_128 is not 32 hex digits"),
    (lambda s: s.update(xxh3_128="ab" * 17), "xxh3_128 is not 32 hex digits"),
    (lambda s: s.update(xxh3_128="AB" * 16), "xxh3_128 is not 32 hex digits"),
    (lambda s: s.update(xxh3_128="ab" * 15 + "a\n"), "xxh3_128 is not 32 hex digits"),
    (lambda s: s.update(xxh3_128=None), "xxh3_128 is a NoneType"),
    (lambda s: s.pop("xxh3_128"), "xxh3_128 is missing"),
    (lambda s: s.update(sha256="ab" * 16), "sha256 is not 64 hex digits"),
])
def test_malformed_xxh3_fields_are_refused(tmp_path, change, message):
    root = store(tmp_path / "s")
    edit(root, lambda m: change(m["layers"]["b"]["shards"][1]))
    with pytest.raises(ActclustError, match=f"shards\\[1\\].{message}"):
        ActivationStore(root)
    problems = verify_store(root)
    assert len(problems) == 1 and problems[0].startswith("manifest.json: ")


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(checksum="md5"), "checksum 'md5' is not one of"),
    (lambda m: m.update(checksum=["xxh3_128"]), "checksum .* is not one of"),
    (lambda m: m.update(schema_version=1), "needs schema_version 2"),
    # An old manifest (no "checksum": sha256) must list sha256, not xxh3 alone.
    (lambda m: m.pop("checksum"), "sha256 is missing"),
])
def test_the_stores_checksum_field_is_validated(tmp_path, change, message):
    root = store(tmp_path / "s")
    edit(root, change)
    with pytest.raises(ActclustError, match=message):
        ActivationStore(root)


def test_an_unknown_checksum_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ActclustError, match="unknown shard checksum 'md5'"):
        store(tmp_path / "s", checksum="md5")
    assert not (tmp_path / "s").exists()
    assert fmt.checksum_field("xxh3_128") == "xxh3_128"


@pytest.mark.parametrize("checksum", ["xxh3", "sha256"])
def test_early_flushes_leave_the_same_bytes_and_checksum(tmp_path, monkeypatch, checksum):
    from actclust.store import shards

    calls = []
    monkeypatch.setattr(shards, "SYNC_BYTES", 100)  # a flush after every append
    monkeypatch.setattr(shards.os, "fdatasync", lambda fd: calls.append(fd))
    a = store(tmp_path / "a", checksum=checksum)
    assert calls  # the data went to disk along the way, not only at the final fsync
    monkeypatch.setattr(shards, "SYNC_BYTES", 1 << 40)
    b = store(tmp_path / "b", checksum=checksum)
    for name in LAYERS:
        for x, y in zip(manifest(a)["layers"][name]["shards"],
                        manifest(b)["layers"][name]["shards"]):
            assert x == y
            assert (a / "layers" / name / x["file"]).read_bytes() == \
                (b / "layers" / name / y["file"]).read_bytes()
    assert verify_store(a) == []
