"""Capture on Ray: MiniLM over the bundled ``topics`` documents split over two local Ray
workers equals a single-process capture row for row and bit for bit; a part killed half way
and a merge stopped half way are finished by ``--resume``; a parts folder the capture did
not write is never used. The splitting and the refusals need no Ray and run in the fast
suite; everything that starts Ray shares one local Ray session (``slow``)."""

import sys

import numpy as np
import pandas as pd
import pytest

import actclust
from actclust import capture_parallel
from actclust.capture import _shard_plan
from actclust.capture_parallel import _check_reachable, split_documents
from actclust.cli import main
from actclust.data import Dataset
from actclust.errors import ActclustError
from actclust.store import ActivationStore, StoreWriter, verify_store
from actclust.store import format as fmt
from actclust.store.merge import PARTS_DIR, part_path

LAYERS = ["blocks.3.hook_out", "blocks.5.hook_out"]
SETTINGS = dict(limit=40, batch_size=8, progress=False)


# --------------------------------------------------------------------- the split, no Ray

def batch_starts(shards, batch_size):
    """Where a single-process capture starts each batch."""
    return {lo for s in shards for lo in range(s["doc_start"], s["doc_stop"], batch_size)}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_parts", [1, 2, 3, 7])
def test_parts_are_contiguous_and_start_where_a_batch_starts(seed, n_parts):
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, 40, size=int(rng.integers(1, 200)))
    shard_rows = int(rng.choice([50, 400, 10**6]))
    batch_size = int(rng.choice([1, 4, 32]))
    shards = _shard_plan(rows, shard_rows)
    parts = split_documents(shards, rows, batch_size, n_parts)
    assert 1 <= len(parts) <= n_parts
    assert parts[0]["doc_start"] == 0 and parts[-1]["doc_stop"] == len(rows)
    assert all(a["doc_stop"] == b["doc_start"] for a, b in zip(parts, parts[1:]))
    assert all(p["doc_stop"] > p["doc_start"] for p in parts)
    assert [p["index"] for p in parts] == list(range(len(parts)))
    assert sum(p["rows"] for p in parts) == rows.sum()
    assert {p["doc_start"] for p in parts} <= batch_starts(shards, batch_size)
    # each part, planned on its own, reproduces the whole run's batches
    for p in parts:
        own = _shard_plan(rows[p["doc_start"]:p["doc_stop"]], shard_rows)
        shifted = [{**s, "doc_start": s["doc_start"] + p["doc_start"],
                    "doc_stop": s["doc_stop"] + p["doc_start"]} for s in own]
        assert batch_starts(shifted, batch_size) == \
            {b for b in batch_starts(shards, batch_size) if p["doc_start"] <= b < p["doc_stop"]}


def test_with_enough_shards_the_parts_are_runs_of_whole_shards():
    rows = np.full(100, 10)
    shards = _shard_plan(rows, 100)  # ten shards of ten documents
    parts = split_documents(shards, rows, 4, 3)
    assert [(p["doc_start"], p["doc_stop"]) for p in parts] == [(0, 30), (30, 70), (70, 100)]


def test_with_fewer_shards_than_parts_a_shard_is_cut_at_its_batches():
    rows = np.full(40, 16)
    shards = _shard_plan(rows, 10**6)
    parts = split_documents(shards, rows, 8, 2)
    # five batches of eight documents: as even as whole batches allow
    assert [(p["doc_start"], p["doc_stop"]) for p in parts] in ([(0, 16), (16, 40)],
                                                                 [(0, 24), (24, 40)])
    assert split_documents(shards, rows, 32, 4)[-1]["doc_stop"] == 40  # two batches: 2 parts
    assert len(split_documents(shards, rows, 32, 4)) == 2


def test_a_part_is_its_documents_of_the_whole():
    seen = []

    def labeler(index, text, offsets, positions):
        seen.append((index, text))
        return {"doc_index": [index] * len(offsets)}

    docs = pd.DataFrame({"doc_id": np.arange(10, dtype=np.int64),
                         "text": [f"text {i}" for i in range(10)], "topic": list("ab" * 5)})
    ds = Dataset("toy", docs, token_labeler=labeler, meta={"limit": 10})
    part = capture_parallel.part_dataset(ds, {"index": 1, "doc_start": 4, "doc_stop": 7}, 3)
    assert part.docs["doc_id"].tolist() == [4, 5, 6]
    assert part.docs.index.tolist() == [0, 1, 2]
    assert part.meta["actclust_part"] == {"index": 1, "of": 3, "doc_start": 4, "doc_stop": 7}
    assert part.meta["limit"] == 10
    # a labeler that reads its documents by index is given the whole's index
    assert part.token_labeler(2, "text 6", [(0, 4)], [1]) == {"doc_index": [6]}
    assert seen == [(6, "text 6")]


# ------------------------------------------------------------- refusals, before any work

@pytest.mark.parametrize("kwargs, message", [
    (dict(backend="ray", workers=0), "workers must be at least 1"),
    (dict(backend="dask"), "unknown backend 'dask'"),
    (dict(workers=2), "apply to the Ray backend"),
    (dict(address="10.0.0.1:6379"), "apply to the Ray backend"),
    (dict(backend="ray", address="no-port"), "is not host:port"),
])
def test_bad_settings_are_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(ActclustError, match=message):
        actclust.capture("minilm", "topics", LAYERS, out=tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


def test_without_ray_installed_the_error_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ActclustError, match=r"pip install 'actclust\[ray\]'"):
        actclust.capture("minilm", "topics", LAYERS, out=tmp_path / "s", backend="ray")
    assert not (tmp_path / "s").exists()


def test_an_unreachable_address_fails_at_once(tmp_path, monkeypatch):
    with pytest.raises(ActclustError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1", timeout=2)
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as a fresh process
    assert main(["capture", "--model", "minilm", "--dataset", "topics", "--layers", LAYERS[0],
                 "--out", str(tmp_path / "s"), "--backend", "ray", "--address",
                 "127.0.0.1:1"]) == 2


def test_an_existing_store_is_refused_without_overwrite(tmp_path):
    plan = [{"index": 0, "doc_start": 0, "doc_stop": 1, "rows": 1}]
    with StoreWriter(tmp_path / "s", {}, plan, ["h"], pd.DataFrame({"doc_id": [0]}),
                     "float32") as writer:
        writer.begin_shard(plan[0])
        writer.append({"h": np.ones((1, 2), np.float32)}, pd.DataFrame({"doc_id": [0]}))
        writer.commit_shard()
        writer.finalize()
    with pytest.raises(ActclustError, match="already exists; pass --resume"):
        actclust.capture("minilm", "topics", LAYERS, out=tmp_path / "s", backend="ray")


@pytest.mark.parametrize("flags", [{}, {"resume": True}, {"overwrite": True}])
def test_a_local_capture_never_takes_over_a_capture_in_parts(tmp_path, flags):
    (tmp_path / "s" / ".parts").mkdir(parents=True)
    with pytest.raises(ActclustError, match="holds a capture in parts on Ray"):
        actclust.capture("minilm", "topics", LAYERS, out=tmp_path / "s", **flags)
    assert (tmp_path / "s" / ".parts").is_dir()


# ----------------------------------------------------------------- on a local Ray (slow)

@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Single-process captures to compare with, made once per setting."""
    made = {}

    def get(pool, dataset="topics", **extra):
        key = (pool, dataset, tuple(sorted(extra.items())))
        if key not in made:
            out = tmp_path_factory.mktemp("local") / "s"
            made[key] = actclust.capture("minilm", dataset, LAYERS, pool=pool, out=out,
                                         **SETTINGS, **extra)
        return made[key]
    return get


def assert_same_store(got, want):
    assert got.layers == want.layers
    for name in want.layers:
        a, b = got.layer(name).to_numpy(), want.layer(name).to_numpy()
        assert a.dtype == b.dtype and np.array_equal(a, b), name
        assert got.manifest["layers"][name]["dtype"] == want.manifest["layers"][name]["dtype"]
    pd.testing.assert_frame_equal(got.rows.to_pandas(), want.rows.to_pandas())
    pd.testing.assert_frame_equal(got.docs, want.docs)
    for key in ("model", "dataset", "capture"):
        assert got.manifest[key] == want.manifest[key], key
    assert verify_store(got.root) == []
    assert not (got.root / PARTS_DIR).exists()


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["topics", "tokens"])
def test_two_workers_equal_one_process_token_rows(local_ray, reference, tmp_path, dataset):
    # "tokens" labels every token at capture time from its document: a part's documents
    # must be labelled as the same documents of the whole
    store = actclust.capture("minilm", dataset, LAYERS, pool="none", out=tmp_path / "s",
                             backend="ray", workers=2, **SETTINGS)
    assert len(store.manifest["plan"]) == 2  # one shard of 40 documents, cut in two
    assert_same_store(store, reference("none", dataset))


@pytest.mark.slow
def test_two_workers_equal_one_process_pooled_rows_from_the_command_line(local_ray,
                                                                          reference, tmp_path,
                                                                          capsys):
    out = str(tmp_path / "s")
    assert main(["capture", "--model", "minilm", "--dataset", "topics", "--layers",
                 ",".join(LAYERS), "--pool", "mean", "--limit", "40", "--batch-size", "8",
                 "--out", out, "--backend", "ray", "--workers", "2", "--quiet"]) == 0
    assert "wrote 40 rows x 2 layers" in capsys.readouterr().out
    assert main(["verify", out]) == 0
    store = ActivationStore(out)
    assert len(store.manifest["plan"]) == 2  # five batches of documents, in two parts
    assert_same_store(store, reference("mean"))


def die_after_one_shard(settings, dataset, out, threads):
    """Part 1's task killed (the whole worker process, as by the OOM killer) right after
    each try commits one shard; other parts run as usual."""
    import os

    from actclust import capture_parallel as cp
    from actclust.store.writer import StoreWriter

    if dataset.meta["actclust_part"]["index"] == 1:
        commit = StoreWriter.commit_shard

        def commit_then_die(self):
            commit(self)
            os._exit(1)

        StoreWriter.commit_shard = commit_then_die
    return cp._capture_part(settings, dataset, out, threads)


@pytest.mark.slow
def test_a_killed_part_is_resumed_and_finished_parts_are_kept(local_ray, reference, tmp_path,
                                                              monkeypatch):
    out = tmp_path / "s"
    settings = dict(pool="none", shard_rows=64, **SETTINGS)
    monkeypatch.setattr(capture_parallel, "_capture_part", die_after_one_shard)
    with pytest.raises(ActclustError, match=r"part 1 .* failed on Ray .* rerun with --resume"):
        actclust.capture("minilm", "topics", LAYERS, out=out, backend="ray", workers=2,
                         **settings)
    monkeypatch.undo()
    done = fmt.read_manifest(part_path(out, 0))
    killed = fmt.read_manifest(part_path(out, 1))
    assert done["complete"] and not killed["complete"]
    assert len(killed["shards_done"]) == 2  # one shard per try: Ray tried it twice
    kept = {p.stat().st_ino for i in (0, 1) for p in (part_path(out, i) / "layers").rglob("*.npy")}
    with pytest.raises(ActclustError, match="interrupted parallel capture; pass --resume"):
        actclust.capture("minilm", "topics", LAYERS, out=out, backend="ray", **settings)
    store = actclust.capture("minilm", "topics", LAYERS, out=out, backend="ray", workers=2,
                             resume=True, **settings)
    assert_same_store(store, reference("none", shard_rows=64))
    assert store.manifest["plan"] == reference("none", shard_rows=64).manifest["plan"]
    # the finished shards were moved into the store, never captured again
    assert kept <= {p.stat().st_ino for p in (out / "layers").rglob("*.npy")}


def stop_the_merge(monkeypatch, out, after=2):
    """Capture into ``out`` with the merge failing after moving ``after`` shards (as on a
    full disk), through the driver's own ``os.replace``."""
    import os

    real, moves = os.replace, []

    def failing(src, dst, *args, **kwargs):
        if str(src).endswith(".npy") and PARTS_DIR in str(src):
            moves.append(src)
            if len(moves) > after:
                raise OSError(28, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    try:
        with pytest.raises(ActclustError, match="rerun with --resume to finish the merge"):
            actclust.capture("minilm", "topics", LAYERS, pool="none", out=out, backend="ray",
                             workers=2, **SETTINGS)
    finally:
        monkeypatch.setattr(os, "replace", real)
    assert len(list((out / "layers").rglob("*.npy"))) == after


@pytest.mark.slow
def test_a_merge_stopped_half_way_is_finished_by_resume(local_ray, reference, tmp_path,
                                                        monkeypatch):
    out = tmp_path / "s"
    stop_the_merge(monkeypatch, out)
    with pytest.raises(ActclustError, match="incomplete"):
        ActivationStore(out)
    assert main(["verify", str(out)]) == 1
    with pytest.raises(ActclustError, match="interrupted parallel capture; pass --resume"):
        actclust.capture("minilm", "topics", LAYERS, pool="none", out=out, backend="ray",
                         **SETTINGS)

    def no_capture(*args, **kwargs):
        raise AssertionError("the parts are complete: only the merge is left to do")

    with monkeypatch.context() as m:
        m.setattr(capture_parallel, "_capture_parts", no_capture)
        store = actclust.capture("minilm", "topics", LAYERS, pool="none", out=out,
                                 backend="ray", resume=True, **SETTINGS)
    assert_same_store(store, reference("none"))
    # and a stopped merge overwritten: everything captured again
    other = tmp_path / "t"
    stop_the_merge(monkeypatch, other)
    store = actclust.capture("minilm", "topics", LAYERS, pool="none", out=other,
                             backend="ray", workers=2, overwrite=True, **SETTINGS)
    assert_same_store(store, reference("none"))


@pytest.mark.slow
def test_a_parts_folder_it_did_not_write_is_refused(local_ray, tmp_path):
    out = tmp_path / "s"
    (out / PARTS_DIR / "part-0000").mkdir(parents=True)
    (out / PARTS_DIR / "part-0000" / "notes.txt").write_text("mine")
    for flag in ("resume", "overwrite"):
        with pytest.raises(ActclustError, match="was not written by an actclust capture"):
            actclust.capture("minilm", "topics", LAYERS, out=out, backend="ray", workers=2,
                             **{flag: True}, **SETTINGS)
    assert (out / PARTS_DIR / "part-0000" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [PARTS_DIR]
