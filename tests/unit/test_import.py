"""Activations a user already has become an ordinary store: from arrays, batches, files, a
TransformerLens cache and the command line; what is wrong is refused and leaves no store."""

import os
import pickle
import re
import shlex
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from actclust import ActivationStore
from actclust.cli import main
from actclust.errors import ActclustError
from actclust.store import from_activation_cache, from_arrays, verify_store
from actclust.store import importing
from actclust.store.import_files import import_files

RNG = np.random.default_rng(0)


def acts(*shape, dtype=np.float32):
    return RNG.normal(size=shape).astype(dtype)


def assert_ordinary(store):
    """Opens, verifies and describes like a captured store."""
    assert verify_store(store.root) == []
    again = ActivationStore(store.root)
    assert again.complete and len(again) == len(store)
    assert main(["info", str(store.root)]) == 0
    return again


# ---------------------------------------------------------------- from_arrays


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_arrays_round_trip_exactly_with_rows_docs_and_labels(tmp_path, dtype, capsys):
    X = acts(12, 5)
    T = torch.from_numpy(acts(12, 3))
    rows = pd.DataFrame({"doc_id": np.repeat([10, 11, 12], 4), "position": np.tile(range(4), 3),
                         "token": list("abcd") * 3, "kind": ["x", "y"] * 6})
    docs = pd.DataFrame({"doc_id": [10, 11, 12], "text": ["one", "two", "three"],
                         "topic": ["a", "b", "a"]})
    store = from_arrays(tmp_path / "s", {"resid": X, "mlp": T}, rows, docs, dtype=dtype,
                        shard_rows=5, model="gpt2", dataset="mine", progress=False)
    store = assert_ordinary(store)
    want = np.dtype(dtype)
    assert np.array_equal(store.layer("resid")[:], X.astype(want))
    assert np.array_equal(store.layer("mlp")[:], T.numpy().astype(want))
    assert store.layer("resid").dtype == want
    table = store.rows
    assert table["kind"].tolist() == rows["kind"].tolist()
    assert table["token"].tolist() == rows["token"].tolist()
    assert table["topic"].tolist() == ["a"] * 4 + ["b"] * 4 + ["a"] * 4
    assert table["text"].iloc[4] == "two"
    # the user's document ids are kept, the store's are 0..n-1
    assert table["doc_id"].tolist() == np.repeat([0, 1, 2], 4).tolist()
    assert store.docs["user_doc_id"].tolist() == [10, 11, 12]
    # shards never split a document when rows come in document order
    assert [s["rows"] for s in store.manifest["plan"]] == [4, 4, 4]
    m = store.manifest
    assert m["model"]["name"] == "gpt2" and m["dataset"]["name"] == "mine"
    assert m["dataset"]["n_docs"] == 3 and m["capture"]["storage_dtype"] == dtype
    assert "ndarray" in m["imported"] and "Tensor" in m["imported"]


def test_three_dimensional_arrays_become_token_rows(tmp_path):
    Y = acts(3, 4, 2, 3)  # (documents, positions, heads, d_head): flattened per row
    store = from_arrays(tmp_path / "s", {"z": Y}, shard_rows=5, progress=False)
    assert store.layer("z").shape == (12, 6)
    assert np.array_equal(store.layer("z")[:], Y.reshape(12, 6))
    assert store.rows[["doc_id", "position"]].values.tolist()[3:6] == [[0, 3], [1, 0], [1, 1]]
    assert_ordinary(store)


def test_batch_iterables_round_trip_exactly(tmp_path):
    X = acts(23, 4)
    cuts = [0, 3, 4, 11, 20, 23]  # batches of uneven sizes, not aligned with the shards
    batches = (X[a:b] for a, b in zip(cuts[:-1], cuts[1:]))
    tensors = [torch.from_numpy(X[a:b].copy()).to(torch.float64) for a, b in
               zip(cuts[:-1], cuts[1:])]
    labels = pd.DataFrame({"label": RNG.integers(0, 3, 23)})
    store = from_arrays(tmp_path / "s", {"a": batches, "b": tensors}, labels, shard_rows=6,
                        progress=False)
    assert np.array_equal(store.layer("a")[:], X)
    assert np.array_equal(store.layer("b")[:], X)
    assert store.labels("label").tolist() == labels["label"].tolist()
    assert_ordinary(store)
    # n_rows alone is enough without a rows table
    alone = from_arrays(tmp_path / "t", {"a": iter([X[:10], X[10:]])}, n_rows=23,
                        progress=False)
    assert np.array_equal(alone.layer("a")[:], X)


def test_bfloat16_storage_rounds_like_torch(tmp_path):
    X = acts(5, 4)
    store = from_arrays(tmp_path / "s", {"h": X}, dtype="bfloat16", progress=False)
    assert np.array_equal(store.layer("h")[:],
                          torch.from_numpy(X).to(torch.bfloat16).float().numpy())


@pytest.mark.parametrize("layers,kwargs,message", [
    (lambda X: {"a": X, "b": X[:9]}, {}, "same number of rows: a 10, b 9"),
    (lambda X: {"a": X}, {"rows": pd.DataFrame({"doc_id": range(9)})}, "a 10; rows 9"),
    (lambda X: {"a": iter([X])}, {}, "pass rows= or n_rows="),
    (lambda X: {"a": X.astype(np.int64)}, {}, "int64 values, not floating-point"),
    (lambda X: {"a": X[0]}, {}, r"has shape \[4\]"),
    (lambda X: {"../a": X}, {}, "cannot be used as a directory name"),
    (lambda X: {"a": X}, {"rows": pd.DataFrame({"doc_id": [0] * 10}),
                          "docs": pd.DataFrame({"doc_id": [1]})}, "which the docs table"),
    (lambda X: {"a": X}, {"rows": pd.DataFrame({"doc_id": range(10),
                                                "mixed": [1, "a"] * 5})}, "parquet"),
])
def test_what_is_wrong_up_front_is_refused_before_anything_is_written(tmp_path, layers,
                                                                       kwargs, message):
    with pytest.raises(ActclustError, match=message):
        from_arrays(tmp_path / "s", layers(acts(10, 4)), progress=False, **kwargs)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("batches,message", [
    (lambda X: [X[:4], X[4:, :3]], "width 3 after batches of width 4"),  # ragged
    (lambda X: [X[:4], X[4:8]], "hold 8 rows, 10 expected"),  # too few
    (lambda X: [X, X[:1]], "more than the 10 rows"),  # too many
    (lambda X: [X[:6], np.where(np.arange(4)[:, None] == 2, np.nan, X[6:])], "NaN"),
    (lambda X: [X[:6], X[6:, :, None]], "batches are 2-D"),
])
def test_bad_batches_midway_stop_the_import_and_leave_no_store(tmp_path, batches, message):
    X = acts(10, 4)
    with pytest.raises(ActclustError, match=message):
        from_arrays(tmp_path / "s", {"ok": X, "bad": iter(batches(X))}, n_rows=10,
                    shard_rows=3, progress=False)
    assert not (tmp_path / "s").exists()
    # an empty folder the user made stays, empty
    (tmp_path / "mine").mkdir()
    with pytest.raises(ActclustError, match=message):
        from_arrays(tmp_path / "mine", {"ok": X, "bad": iter(batches(X))}, n_rows=10,
                    shard_rows=3, progress=False)
    assert list((tmp_path / "mine").iterdir()) == []


def test_float16_overflow_is_refused(tmp_path):
    with pytest.raises(ActclustError, match="beyond the range of float16"):
        from_arrays(tmp_path / "s", {"h": np.full((3, 2), 1e6, np.float32)}, dtype="float16",
                    progress=False)
    assert not (tmp_path / "s").exists()


def test_an_existing_store_needs_overwrite(tmp_path):
    X = acts(4, 2)
    from_arrays(tmp_path / "s", {"h": X}, progress=False)
    with pytest.raises(ActclustError, match="already exists; pass --resume .* or --overwrite"):
        from_arrays(tmp_path / "s", {"h": X * 2}, progress=False)
    assert np.array_equal(ActivationStore(tmp_path / "s").layer("h")[:], X)
    store = from_arrays(tmp_path / "s", {"h": X * 2}, overwrite=True, progress=False)
    assert np.array_equal(store.layer("h")[:], X * 2)


class Spy:
    """An array-like that records the row ranges read from it."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, key):
        self.reads.append((key.start, key.stop))
        return self.array[key]


def test_a_memmap_larger_than_a_shard_is_read_a_shard_at_a_time(tmp_path, monkeypatch):
    n, width, shard = 4096, 1024, 256  # a 16 MiB file, shards of 1 MiB
    path = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(path, "w+", np.float32, (n, width))
    for lo in range(0, n, 512):
        mm[lo:lo + 512] = np.arange(lo, lo + 512, dtype=np.float32)[:, None]
    mm.flush()
    del mm
    spy = Spy(np.load(path, mmap_mode="r"))
    from_arrays(tmp_path / "spied", {"h": spy}, shard_rows=shard, progress=False)
    assert all(hi - lo <= shard for lo, hi in spy.reads)
    assert [r[0] for r in spy.reads] == [r[1] for r in [(0, 0)] + spy.reads[:-1]]
    assert spy.reads[-1][1] == n
    # peak allocations stay near one shard with chunks bounded by CHUNK_BYTES
    monkeypatch.setattr(importing, "CHUNK_BYTES", shard * width * 4)
    tracemalloc.start()
    try:
        store = import_files([path], tmp_path / "s", shard_rows=shard, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * shard * width * 4, f"peak {peak / 2**20:.1f} MiB for 1 MiB shards"
    assert store.layer("big")[1000][7] == 1000 and store.layer("big").shape == (n, width)
    assert len(store.manifest["plan"]) == n // shard


def mapped_rss_kib(path) -> int:
    """Resident KiB of this process's memory maps of ``path`` (``/proc/self/smaps``)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs /proc/self/smaps")
def test_a_npy_larger_than_memory_keeps_one_chunk_of_it_resident(tmp_path, monkeypatch):
    """The pages of the memory map are given back as the import goes: a file larger than
    memory passes through with about one chunk of it resident, not all of it."""
    from actclust.store import import_sources

    n, width, chunk = 16_384, 1024, 1024  # a 64 MiB file read 4 MiB at a time
    path = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(path, "w+", np.float32, (n, width))
    mm[:] = np.arange(n, dtype=np.float32)[:, None]
    mm.flush()
    del mm
    monkeypatch.setattr(importing, "CHUNK_BYTES", chunk * width * 12)
    resident = []
    release = import_sources._release

    def spy(array, lo, hi):
        resident.append(mapped_rss_kib(path))  # the chunks before this one, written
        release(array, lo, hi)

    monkeypatch.setattr(import_sources, "_release", spy)
    store = import_files([path], tmp_path / "s", progress=False)
    assert len(resident) == n // chunk and store.layer("big")[n - 1][0] == n - 1
    chunk_kib = chunk * width * 4 // 1024
    assert max(resident) <= 2 * chunk_kib, f"{max(resident)} KiB of the file resident"


# ---------------------------------------------------------------- files


def test_npy_files_2d_and_3d(tmp_path):
    np.save(tmp_path / "resid.npy", acts(6, 4))
    np.save(tmp_path / "seq.npy", acts(2, 3, 5))
    store = import_files([tmp_path / "resid.npy", tmp_path / "seq.npy"], tmp_path / "s",
                         progress=False)
    assert store.layers == ["resid", "seq"]
    assert np.array_equal(store.layer("seq")[:], np.load(tmp_path / "seq.npy").reshape(6, 5))
    assert store.rows["position"].tolist() == [0, 1, 2] * 2
    assert "resid.npy (numpy .npy, memory-mapped)" in store.manifest["imported"]
    assert_ordinary(store)


def test_safetensors_each_tensor_a_layer(tmp_path):
    from safetensors.torch import save_file

    tensors = {"blocks.10.hook_resid_post": torch.randn(8, 4),
               "blocks.2.hook_resid_post": torch.randn(8, 6).to(torch.bfloat16),
               "blocks.3.hook_resid_post": torch.randn(8, 4).half()}
    save_file(tensors, tmp_path / "acts.safetensors")
    store = import_files([tmp_path / "acts.safetensors"], tmp_path / "s", shard_rows=3,
                         progress=False)
    assert store.layers == ["blocks.2.hook_resid_post", "blocks.3.hook_resid_post",
                            "blocks.10.hook_resid_post"]
    for name, t in tensors.items():
        assert np.array_equal(store.layer(name)[:], t.float().numpy())
    assert_ordinary(store)
    save_file({"ids": torch.arange(8)[:, None]}, tmp_path / "ids.safetensors")
    with pytest.raises(ActclustError, match="'ids' holds I64 values"):
        import_files([tmp_path / "ids.safetensors"], tmp_path / "t", progress=False)


def test_pt_tensor_and_dict_of_tensors(tmp_path):
    t = torch.randn(2, 5, 4)
    torch.save(t, tmp_path / "hidden.pt")
    torch.save({"transformer.h.0": torch.randn(10, 3), "transformer.h.1": torch.randn(10, 3)},
               tmp_path / "layers.pth")
    store = import_files([tmp_path / "hidden.pt", tmp_path / "layers.pth"], tmp_path / "s",
                         progress=False)
    assert store.layers == ["hidden", "transformer.h.0", "transformer.h.1"]
    assert np.array_equal(store.layer("hidden")[:], t.reshape(10, 4).numpy())
    assert store.rows["doc_id"].tolist() == [0] * 5 + [1] * 5
    assert_ordinary(store)


class Planted:
    """Unpickling this creates ``path``: proof that code from the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pt_file_holding_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"acts": torch.randn(3, 2), "extra": Planted(marker)}, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump(Planted(marker), fh)
    os.rename(tmp_path / "evil.pkl", tmp_path / "raw.pt")
    for name in ("evil.pt", "raw.pt"):
        with pytest.raises(ActclustError, match="other than tensors; .* never runs code"):
            import_files([tmp_path / name], tmp_path / "s", progress=False)
        assert not marker.exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize("obj,message", [
    ([torch.randn(3, 2)], "holds a list, not a tensor"),
    ({"a": torch.randn(3, 2), "step": 5}, "entry 'step' is a int, not a tensor"),
    ({}, "holds a dict"),
])
def test_a_pt_file_of_other_things_is_refused(tmp_path, obj, message):
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(ActclustError, match=message):
        import_files([tmp_path / "x.pt"], tmp_path / "s", progress=False)


def test_a_saved_dataset_with_a_vector_column_and_labels(tmp_path):
    import datasets

    X = acts(7, 4)
    datasets.Dataset.from_dict({"label": list("abcabca"), "acts": X.tolist(),
                                "score": np.arange(7.0)}).save_to_disk(tmp_path / "ds")
    store = import_files([tmp_path / "ds"], tmp_path / "s", progress=False)
    assert store.layers == ["acts"] and np.array_equal(store.layer("acts")[:], X)
    assert store.labels("label").tolist() == list("abcabca")
    assert store.labels("score").tolist() == list(range(7))
    assert_ordinary(store)


def test_a_saelens_activation_cache_imports_as_token_rows(tmp_path):
    """SAELens' CacheActivationsRunner saves one (context_size, d_in) array per sequence
    under the hook's name, and the token ids beside it."""
    import datasets

    n_seq, context, d_in, hook = 5, 6, 8, "blocks.0.hook_mlp_out"
    X = acts(n_seq, context, d_in)
    ids = RNG.integers(0, 100, (n_seq, context)).astype(np.int32)
    features = datasets.Features({
        hook: datasets.Array2D(shape=(context, d_in), dtype="float32"),
        "token_ids": datasets.Sequence(datasets.Value("int32"), length=context)})
    datasets.Dataset.from_dict({hook: X, "token_ids": ids}, features=features) \
        .save_to_disk(tmp_path / "cache")
    store = import_files([tmp_path / "cache"], tmp_path / "s", shard_rows=12, progress=False)
    assert store.layers == [hook]
    assert np.array_equal(store.layer(hook)[:], X.reshape(-1, d_in))
    rows = store.rows
    assert rows["token_id"].tolist() == ids.reshape(-1).tolist()
    assert rows["position"].tolist()[:7] == [0, 1, 2, 3, 4, 5, 0]
    assert [s["rows"] for s in store.manifest["plan"]] == [12, 12, 6]
    assert_ordinary(store)
    with pytest.raises(ActclustError, match="column 'token_ids' holds one value per row|"
                                            "column 'nope'"):
        import_files([tmp_path / "cache"], tmp_path / "t", column="nope", progress=False)


def test_files_with_different_row_counts_are_refused_and_leave_no_store(tmp_path):
    np.save(tmp_path / "a.npy", acts(6, 4))
    np.save(tmp_path / "b.npy", acts(5, 4))
    with pytest.raises(ActclustError, match="same number of rows: a 6, b 5"):
        import_files([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- TransformerLens


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    """A real TransformerLens model: TransformerBridge (TransformerLens 4 replaced
    HookedTransformer with it) around a tiny random GPT-2 built offline."""
    from transformer_lens.model_bridge import TransformerBridge

    from tests.conftest import build_tiny_hf_model

    path = build_tiny_hf_model(tmp_path_factory.mktemp("tiny") / "gpt2", "gpt2")
    return TransformerBridge.boot_transformers(str(path), device="cpu")


def test_run_with_cache_imports_with_transformerlens_names(bridge, tmp_path):
    texts = ["The cat sat on the mat.", "Stocks fell 3% today."]
    tokens = bridge.to_tokens(texts)
    _, cache = bridge.run_with_cache(tokens)
    store = from_activation_cache(cache, tokens, tmp_path / "s", names="blocks.*.hook_resid_post",
                                  model=bridge, texts=texts, labels={"topic": ["pets", "money"]},
                                  shard_rows=tokens.shape[1], progress=False)
    assert store.layers == [f"blocks.{i}.hook_resid_post" for i in range(3)]
    for name in store.layers:
        assert np.array_equal(store.layer(name)[:],
                              cache[name].reshape(-1, cache[name].shape[-1]).numpy())
    rows = store.rows
    assert rows["token_id"].tolist() == tokens.reshape(-1).tolist()
    assert rows["token"].tolist() == bridge.tokenizer.convert_ids_to_tokens(
        tokens.reshape(-1).tolist())
    assert rows["topic"].tolist() == ["pets"] * tokens.shape[1] + ["money"] * tokens.shape[1]
    assert rows["text"].iloc[0] == texts[0]
    assert_ordinary(store)
    # the default takes every per-token hook, never an attention pattern
    every = from_activation_cache(cache, tokens, tmp_path / "all", progress=False)
    assert "blocks.0.hook_resid_post" in every.layers and "blocks.0.attn.hook_z" in every.layers
    assert "blocks.0.hook_out" not in every.layers  # the bridge's alias, stored once
    assert every.layer("blocks.0.attn.hook_z").shape[1] == \
        cache["blocks.0.attn.hook_z"].shape[2] * cache["blocks.0.attn.hook_z"].shape[3]
    assert not any(name.endswith("hook_pattern") for name in every.layers)
    with pytest.raises(ActclustError, match="no row per token"):
        from_activation_cache(cache, tokens, tmp_path / "p", names="blocks.0.attn.hook_pattern",
                              progress=False)
    with pytest.raises(ActclustError, match="no hook in the cache matches 'blocks.9.*'"):
        from_activation_cache(cache, tokens, tmp_path / "p", names="blocks.9.*", progress=False)


def test_a_dict_of_tensors_works_like_a_cache(tmp_path):
    cache = {"blocks.0.hook_resid_post": torch.randn(2, 3, 4),
             "blocks.0.attn.hook_pattern": torch.randn(2, 4, 3, 3)}
    store = from_activation_cache(cache, torch.zeros(2, 3, dtype=torch.long), tmp_path / "s",
                                  progress=False)
    assert store.layers == ["blocks.0.hook_resid_post"]
    with pytest.raises(ActclustError, match="texts has 1 entries, tokens 2 sequences"):
        from_activation_cache(cache, torch.zeros(2, 3, dtype=torch.long), tmp_path / "t",
                              texts=["one"], progress=False)


# ---------------------------------------------------------------- command line


def test_cli_imports_renames_and_refuses_an_existing_store(tmp_path, capsys):
    np.save(tmp_path / "a.npy", acts(6, 4))
    torch.save({"x": torch.randn(6, 2)}, tmp_path / "b.pt")
    pd.DataFrame({"doc_id": [0, 0, 1, 1, 2, 2], "kind": list("ababab")}).to_parquet(
        tmp_path / "rows.parquet")
    pd.DataFrame({"doc_id": [0, 1, 2], "text": ["x", "y", "z"]}).to_parquet(
        tmp_path / "docs.parquet")
    out = tmp_path / "s"
    argv = ["import", str(tmp_path / "a.npy"), str(tmp_path / "b.pt"), "--out", str(out),
            "--layer", "resid", "--layer", "mlp", "--rows", str(tmp_path / "rows.parquet"),
            "--docs", str(tmp_path / "docs.parquet"), "--dtype", "float16", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "wrote 6 rows x 2 layers" in capsys.readouterr().out
    store = ActivationStore(out)
    assert store.layers == ["resid", "mlp"] and store.layer("mlp").dtype == np.float16
    assert store.rows["text"].tolist() == ["x", "x", "y", "y", "z", "z"]
    assert main(["verify", str(out)]) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err
    assert main(argv + ["--overwrite"]) == 0


@pytest.mark.parametrize("make,extra,message", [
    (lambda d: (d / "a.txt").write_text("1 2 3"), [], "cannot import .txt"),
    (lambda d: torch.save([1, 2], d / "a.pt"), [], "holds a list, not a tensor"),
    (lambda d: np.save(d / "a.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True),
     [], "not a .npy file of numbers"),
    (lambda d: np.save(d / "a.npy", np.zeros((3, 2), np.int32)), [], "int32 values"),
    (lambda d: np.save(d / "a.npy", np.zeros((3, 2), np.float32)), ["--layer", "x",
                                                                     "--layer", "y"],
     "--layer gives 2 names for 1 layers"),
    (lambda d: np.save(d / "a.npy", np.zeros((3, 2), np.float32)), ["--rows", "nope.parquet"],
     "--rows table nope.parquet does not exist"),
    (lambda d: None, [], "does not exist"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, make, extra, message):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    name = next((p.name for p in tmp_path.iterdir() if p.name.startswith("a.")), "a.npy")
    assert main(["import", name, "--out", "s", "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- the docs pages run

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def run_page(page: str, namespace: dict, capsys) -> None:
    """Run every code block of a docs page in order: Python in one namespace, shell lines
    (all ``actclust`` commands) through the command's ``main``."""
    blocks = FENCE.findall((DOCS / page).read_text())
    assert blocks, page
    for lang, code in blocks:
        if lang == "python":
            exec(compile(code, f"docs/{page}", "exec"), namespace)
        elif lang == "bash":
            for line in code.replace("\\\n", " ").splitlines():
                if not line.strip():
                    continue
                argv = shlex.split(line)
                assert argv[0] == "actclust", f"docs/{page}: cannot run {line!r}"
                assert main(argv[1:]) == 0, f"{line}: {capsys.readouterr().err}"
        else:
            pytest.fail(f"docs/{page} has a {lang} block this test cannot run")


def put_in_hf_cache(cache: Path, repo_id: str, model_dir: Path) -> None:
    """A model as huggingface_hub lays out its cache: refs/main -> snapshots/<commit>/."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "c" * 40
    shutil.copytree(model_dir, folder / "snapshots" / commit)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)


def saelens_cache(path: Path, n_seq=4, context=6, d_in=8) -> None:
    """A folder as SAELens' CacheActivationsRunner writes it."""
    import datasets

    features = datasets.Features({
        "blocks.0.hook_mlp_out": datasets.Array2D(shape=(context, d_in), dtype="float32"),
        "token_ids": datasets.Sequence(datasets.Value("int32"), length=context)})
    datasets.Dataset.from_dict(
        {"blocks.0.hook_mlp_out": acts(n_seq, context, d_in),
         "token_ids": RNG.integers(0, 50, (n_seq, context)).astype(np.int32)},
        features=features).save_to_disk(path)


@pytest.mark.slow
def test_the_coming_from_transformerlens_page_runs(tiny_models, tmp_path, monkeypatch,
                                                   capsys):
    cache = tmp_path / "hf-cache"
    for repo_id in ("gpt2", "openai-community/gpt2", "EleutherAI/pythia-70m"):
        put_in_hf_cache(cache, repo_id, tiny_models["gpt2"])  # small and random, offline
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub

    # read when huggingface_hub was imported; transformers (under TransformerLens) uses it
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    saelens_cache(work / "tiny-stories-cache")
    # `hidden` stands for the tensor an nnsight trace saved: (batch, position, d_model)
    namespace = {"hidden": torch.randn(3, 5, 32)}
    run_page("coming-from-transformerlens.md", namespace, capsys)
    for store in ("pythia-topics", "pythia-topics-py", "gpt2-cache", "tiny-stories-store",
                  "nnsight-store", "nnsight-store-py"):
        assert verify_store(work / store) == [], store
    assert ActivationStore(work / "pythia-topics").manifest["model"]["revision"] == "c" * 40
    assert ActivationStore(work / "nnsight-store").layer("gpt_neox.layers.3").shape == (15, 32)
    assert "token_id" in ActivationStore(work / "tiny-stories-store").rows.columns
    assert (work / "pythia-report.html").stat().st_size > 0
    assert namespace["store"].layers == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post",
                                         "blocks.2.hook_resid_post"]


def test_the_importing_page_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    run_page("importing.md", namespace, capsys)
    assert namespace["store"].labels("topic").tolist() == ["pets"] * 3 + ["money"] * 3
    assert verify_store(tmp_path / "npy-store") == []
