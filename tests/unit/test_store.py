"""The store on its own: atomic shards, checksums, resume bookkeeping, memory-mapped reads."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from actclust import ActivationStore
from actclust.errors import ActclustError
from actclust.store import ShardWriter, StoreWriter, verify_store
from actclust.store import format as fmt

LAYERS = ["blocks.0.hook_out", "blocks.1.hook_out"]


def make_store(root, n_docs=10, rows_per_doc=3, shard_docs=4, dim=5, dtype="float32",
               seed=0, scale=1.0, nan_row=None):
    """A store of random rows written through the real writer; returns it and the data.

    ``scale`` multiplies the columns (a per-column array gives an anisotropic cloud);
    ``nan_row`` puts a NaN in that row."""
    rng = np.random.default_rng(seed)
    data = {name: (rng.normal(size=(n_docs * rows_per_doc, dim)) * scale).astype(np.float32)
            for name in LAYERS}
    if nan_row is not None:
        for block in data.values():
            block[nan_row, 0] = np.nan
    plan = [{"index": i, "doc_start": lo, "doc_stop": min(lo + shard_docs, n_docs),
             "rows": (min(lo + shard_docs, n_docs) - lo) * rows_per_doc}
            for i, lo in enumerate(range(0, n_docs, shard_docs))]
    docs = pd.DataFrame({"doc_id": np.arange(n_docs), "text": [f"doc {i}" for i in range(n_docs)],
                         "topic": [["a", "b"][i % 2] for i in range(n_docs)]})
    writer = StoreWriter(root, {"model": {"name": "toy"}}, plan, LAYERS, docs, dtype)
    for shard in writer.pending_shards():
        writer.begin_shard(shard)
        lo, hi = shard["doc_start"] * rows_per_doc, shard["doc_stop"] * rows_per_doc
        arrays = {}
        for name in LAYERS:
            block = data[name][lo:hi]
            if dtype == "bfloat16":
                import torch
                block = torch.from_numpy(block).to(torch.bfloat16).view(torch.int16).numpy() \
                    .view(np.uint16)
            arrays[name] = block.astype(fmt.STORAGE_DTYPES[dtype], copy=False)
        rows = pd.DataFrame({"doc_id": np.repeat(np.arange(shard["doc_start"], shard["doc_stop"]),
                                                 rows_per_doc)})
        writer.append(arrays, rows)
        writer.commit_shard()
    writer.finalize()
    return ActivationStore(root), data


@pytest.mark.parametrize("checksum", ["sha256", "xxh3"])
def test_shard_checksum_is_the_hash_of_the_file(tmp_path, checksum):
    import xxhash

    w = ShardWriter(tmp_path / "00000.npy", n_rows=4, storage_dtype="float16",
                    checksum=checksum)
    w.append(np.arange(8, dtype=np.float16).reshape(2, 4))
    w.append(np.ones((2, 4), np.float16))
    info = w.commit()
    raw = (tmp_path / "00000.npy").read_bytes()
    if checksum == "sha256":
        assert info["sha256"] == hashlib.sha256(raw).hexdigest() and "xxh3_128" not in info
    else:
        assert info["xxh3_128"] == xxhash.xxh3_128(raw).hexdigest() and "sha256" not in info
    loaded = np.load(tmp_path / "00000.npy")
    assert loaded.shape == (4, 4) and loaded.dtype == np.float16
    assert loaded[1, 3] == 7 and loaded[3, 0] == 1


def test_shard_is_invisible_until_committed(tmp_path):
    w = ShardWriter(tmp_path / "00000.npy", n_rows=4, storage_dtype="float32")
    w.append(np.ones((2, 3), np.float32))
    assert not (tmp_path / "00000.npy").exists()
    with pytest.raises(ValueError, match="2 rows written, 4 planned"):
        w.commit()
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_layer_reads_back_across_shards(tmp_path):
    store, data = make_store(tmp_path / "s")
    view = store.layer("blocks.1.hook_out")
    ref = data["blocks.1.hook_out"]
    assert len(view.shards) == 3 and view.shape == ref.shape and len(store) == 30
    np.testing.assert_array_equal(view.to_numpy(), ref)
    np.testing.assert_array_equal(view[5:17], ref[5:17])  # spans two shard borders
    np.testing.assert_array_equal(view[::7], ref[::7])
    np.testing.assert_array_equal(view[[29, 0, 13, 13]], ref[[29, 0, 13, 13]])
    np.testing.assert_array_equal(view[-1], ref[-1])
    mask = np.arange(30) % 4 == 1
    np.testing.assert_array_equal(view[mask], ref[mask])
    np.testing.assert_array_equal(view[3:9, 2], ref[3:9, 2])
    np.testing.assert_array_equal(np.asarray(view), ref)
    with pytest.raises(IndexError):
        view[30]


def test_single_shard_layer_is_a_memory_map_readable_by_numpy_alone(tmp_path):
    store, data = make_store(tmp_path / "s", shard_docs=100)
    arr = store.layer("blocks.0.hook_out").to_numpy()
    assert isinstance(arr, np.memmap)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    shard = manifest["layers"]["blocks.0.hook_out"]["shards"][0]["file"]
    plain = np.load(tmp_path / "s" / "layers" / "blocks.0.hook_out" / shard)
    np.testing.assert_array_equal(plain, data["blocks.0.hook_out"])
    rows = pd.read_parquet(tmp_path / "s" / "rows.parquet")
    assert rows["row"].tolist() == list(range(30))


def test_rows_join_document_labels(tmp_path):
    store, _ = make_store(tmp_path / "s")
    assert list(store.rows.columns) == ["row", "doc_id", "text", "topic"]
    assert store.labels("topic")[:7].tolist() == ["a"] * 3 + ["b"] * 3 + ["a"]
    with pytest.raises(ActclustError, match="label column 'colour'.*topic"):
        store.labels("colour")
    with pytest.raises(ActclustError, match="closest valid: blocks.1.hook_out"):
        store.layer("blocks.1.hook_ot")


def test_iter_batches_shuffle_is_a_reproducible_permutation(tmp_path):
    store, data = make_store(tmp_path / "s")
    view = store.layer("blocks.0.hook_out")
    plain = np.concatenate(list(view.iter_batches(7)))
    np.testing.assert_array_equal(plain, data["blocks.0.hook_out"])
    first = [b.copy() for b in view.iter_batches(8, shuffle=True, seed=3)]
    again = [b.copy() for b in view.iter_batches(8, shuffle=True, seed=3)]
    other = np.concatenate(list(view.iter_batches(8, shuffle=True, seed=4)))
    assert [len(b) for b in first] == [8, 8, 8, 6]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    assert not np.array_equal(np.concatenate(first), other)
    # every row exactly once
    key = lambda a: sorted(map(tuple, a.round(6)))  # noqa: E731
    assert key(np.concatenate(first)) == key(data["blocks.0.hook_out"])
    X, y = next(view.iter_batches(30, shuffle=True, seed=1, labels="topic"))
    topics = np.array(["a", "b"] * 5)[np.arange(30) // 3]
    for x_row, label in zip(X, y):
        (match,) = np.nonzero((data["blocks.0.hook_out"] == x_row).all(1))[0]
        assert topics[match] == label


def test_dataloader_yields_float32_tensors(tmp_path):
    import torch

    store, data = make_store(tmp_path / "s", dtype="float16")
    loader = store.layer("blocks.0.hook_out").dataloader(batch_size=12)
    batches = list(loader)
    assert [tuple(b.shape) for b in batches] == [(12, 5), (12, 5), (6, 5)]
    assert all(b.dtype == torch.float32 for b in batches)
    np.testing.assert_allclose(torch.cat(batches).numpy(), data["blocks.0.hook_out"],
                               rtol=1e-3, atol=1e-3)
    assert len(loader) == 3


def test_bfloat16_layers_decode_to_float32(tmp_path):
    store, data = make_store(tmp_path / "s", dtype="bfloat16")
    view = store.layer("blocks.0.hook_out")
    assert view.dtype == np.float32 and view.storage_dtype == "bfloat16"
    np.testing.assert_allclose(view.to_numpy(), data["blocks.0.hook_out"], rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(view[4:6], data["blocks.0.hook_out"][4:6], rtol=1e-2, atol=1e-2)


def test_existing_directory_is_refused_without_resume_or_overwrite(tmp_path):
    make_store(tmp_path / "s")
    with pytest.raises(ActclustError, match="already exists.*--resume.*--overwrite"):
        make_store(tmp_path / "s")
    store, _ = make_store(tmp_path / "s2")
    other = tmp_path / "notastore"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    plan = [{"index": 0, "doc_start": 0, "doc_stop": 1, "rows": 1}]
    with pytest.raises(ActclustError, match="not an actclust store"):
        StoreWriter(other, {}, plan, LAYERS, pd.DataFrame({"doc_id": [0]}), "float32",
                    overwrite=True)
    assert (other / "precious.txt").read_text() == "keep me"


def test_verify_names_the_damaged_shard(tmp_path):
    store, _ = make_store(tmp_path / "s")
    assert verify_store(tmp_path / "s") == []
    shard = tmp_path / "s" / "layers" / "blocks.1.hook_out" / "00001.npy"
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    problems = verify_store(tmp_path / "s")
    assert problems == ["layers/blocks.1.hook_out/00001.npy: checksum mismatch "
                        "(file changed or damaged)"]
    (tmp_path / "s" / "layers" / "blocks.0.hook_out" / "00002.npy").unlink()
    problems = verify_store(tmp_path / "s")
    assert "layers/blocks.0.hook_out/00002.npy: missing" in problems
    with pytest.raises(ActclustError, match="00002.npy is missing"):
        ActivationStore(tmp_path / "s").layer("blocks.0.hook_out").to_numpy()


def test_newer_schema_is_refused_with_upgrade_hint(tmp_path):
    make_store(tmp_path / "s")
    path = tmp_path / "s" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema_version"] = fmt.SCHEMA_VERSION + 1
    path.write_text(json.dumps(manifest))
    new, ours = fmt.SCHEMA_VERSION + 1, fmt.SCHEMA_VERSION
    with pytest.raises(ActclustError,
                       match=f"schema {new}; this actclust reads schema <= {ours}.*Upgrade"):
        ActivationStore(tmp_path / "s")


def test_not_a_store(tmp_path):
    with pytest.raises(ActclustError, match="does not exist"):
        ActivationStore(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ActclustError, match="not an actclust store"):
        ActivationStore(tmp_path / "empty")


def test_store_renders_as_compact_html_without_reading_its_rows(tmp_path, monkeypatch):
    store, _ = make_store(tmp_path / "<b>s&t")
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: pytest.fail("rows were read"))
    html = store._repr_html_()
    assert "30 rows" in html and "2 layer(s)" in html and "complete" in html
    for name in LAYERS:
        assert f"<code>{name}</code>" in html
    assert "30 x 5" in html and "<code>topic</code>" in html and "<code>text</code>" not in html
    assert "&lt;b&gt;s&amp;t" in html and "<b>s&t" not in html  # the path is escaped
