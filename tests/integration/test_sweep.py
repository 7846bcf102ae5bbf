"""Sweeps on a real MiniLM store: the table, resuming after a kill, failed cells, parallel
processes and Ray giving the same table, and bad input caught before any work."""

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClusterMixin

import actclust
from actclust._util.schema import PROBE_METHOD
from actclust.compare import RESULT_COLUMNS
from actclust.errors import ActclustError
from actclust.reporters import KMeans
from actclust.reporters import _base as reporter_base
from actclust.sweep import add_command, run_sweep
from actclust.sweep.cells import TABLE_COLUMNS, TIMING_METRICS

LAYERS = ["blocks.0.hook_out", "blocks.5.hook_out"]
N_CELLS = 2 * (2 + 2 + 2 * 2 + 2)  # layers x (kmeans, pca, gmm grid of 2, probe) x seeds


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-store") / "store"
    return actclust.capture("minilm", "topics", LAYERS, pool="mean", limit=200, out=out,
                            progress=False)


def sweep(out, store, **changes):
    spec = {"name": "test", "out": str(out), "data": {"store": str(store.root)},
            "labels": ["topic"], "seeds": 2,
            "reporters": ["kmeans", {"name": "pca", "params": {"n_components": 5}},
                          {"name": "gmm", "grid": {"covariance_type": ["diag", "spherical"]}}],
            "probes": {"Cs": [0.1, 10.0], "cv": 3}, "run": {"report": False}}
    spec.update(changes)
    return spec


def stable(table):
    """The table without timings, which differ from run to run."""
    return table[~table["metric"].isin(TIMING_METRICS)].reset_index(drop=True)


class WorkerCheck(ClusterMixin, BaseEstimator):
    """A test reporter: k-means that leaves a file named after the process it ran in, or
    kills that process (never the test's own)."""

    _parameter_constraints: dict = {}

    def __init__(self, n_clusters=8, random_state=None, pid_dir="", kill_unless_pid=0):
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.pid_dir = pid_dir
        self.kill_unless_pid = kill_unless_pid

    def fit(self, X, y=None):
        if self.kill_unless_pid and os.getpid() != self.kill_unless_pid:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.pid_dir:
            (Path(self.pid_dir) / str(os.getpid())).touch()
        self.labels_ = KMeans(self.n_clusters, random_state=self.random_state).fit(X).labels_
        return self


@pytest.fixture
def worker_check(monkeypatch):
    """WorkerCheck registered as "test-worker" for this test (workers register it from
    the cell, as they would any reporter registered outside actclust)."""
    monkeypatch.setitem(reporter_base._REGISTRY, "test-worker", WorkerCheck)
    return "test-worker"


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory):
    return run_sweep(sweep(tmp_path_factory.mktemp("reference") / "out", store),
                     progress=False)


def test_table_is_tidy_complete_and_on_disk(reference):
    table = reference.table
    assert list(table.columns) == TABLE_COLUMNS
    per_layer = 2 * 8 + 2 * 3 + 2 * 2 * 8 + 2 * 4  # kmeans, pca, gmm x 2, probe
    assert len(table) == 2 * per_layer
    assert reference.ran == N_CELLS and reference.skipped == 0
    assert reference.failures.empty
    assert set(table["method"]) == {"kmeans", "pca", "gmm(covariance_type=diag)",
                                    "gmm(covariance_type=spherical)", PROBE_METHOD}
    assert not table.duplicated(["layer", "method", "label", "metric", "seed"]).any()
    pd.testing.assert_frame_equal(pd.read_parquet(reference.results_path), table)
    nmi = table[(table["method"] == "kmeans") & (table["metric"] == "nmi")]
    by_layer = nmi.groupby("layer")["value"].mean()
    assert by_layer[LAYERS[1]] > by_layer[LAYERS[0]] + 0.1  # topics cluster late
    summary = reference.summary()
    assert f"{N_CELLS} cells run" in summary and "probe_accuracy" in summary


def test_resume_skips_finished_cells_and_a_change_redoes_only_its_cells(reference, store,
                                                                         tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference.out, out)
    with pytest.raises(ActclustError, match=f"already holds {N_CELLS} finished cells.*--resume"):
        run_sweep(sweep(out, store), progress=False)
    again = run_sweep(sweep(out, store), resume=True, progress=False)
    assert (again.ran, again.skipped) == (0, N_CELLS)
    pd.testing.assert_frame_equal(again.table, reference.table)  # timings included
    changed = sweep(out, store)
    changed["reporters"] = [{"name": "kmeans", "params": {"n_init": 2}},
                            *changed["reporters"][1:]]
    third = run_sweep(changed, resume=True, progress=False)
    assert (third.ran, third.skipped) == (4, N_CELLS - 4)  # kmeans x 2 layers x 2 seeds
    others = third.table["method"] != "kmeans"
    pd.testing.assert_frame_equal(third.table[others].reset_index(drop=True),
                                  reference.table[reference.table["method"] != "kmeans"]
                                  .reset_index(drop=True))
    with pytest.raises(ActclustError, match="holds a different sweep \\('test'"):
        run_sweep({**sweep(out, store), "name": "other"}, resume=True, progress=False)
    copy = tmp_path / "copy"  # the same name, other data: a different sweep too
    shutil.copytree(store.root, copy)
    with pytest.raises(ActclustError, match="different sweep: sweep 'test' there had other "
                                            "data \\(store"):
        run_sweep(sweep(out, types.SimpleNamespace(root=copy)), resume=True, progress=False)
    fresh = run_sweep(sweep(out, store), overwrite=True, progress=False)
    assert fresh.ran == N_CELLS


KILL_SCRIPT = textwrap.dedent("""
    import json, sys
    from actclust.sweep import run_sweep
    run_sweep(json.loads(sys.argv[1]), resume=True, progress=False)
""")


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_uninterrupted_table(reference, store, tmp_path):
    out = tmp_path / "out"
    spec = sweep(out, store)
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cells = out / "cells"
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list(cells.glob("*.parquet"))) if cells.exists() else 0
        if done >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 3 <= done < N_CELLS
    assert not (out / "results.parquet").exists()
    resumed = run_sweep(spec, resume=True, progress=False)
    assert resumed.skipped >= done and resumed.ran + resumed.skipped == N_CELLS
    pd.testing.assert_frame_equal(stable(resumed.table), stable(reference.table))
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))


def test_failed_cell_is_recorded_and_the_rest_go_on(store, tmp_path):
    spec = sweep(tmp_path / "out", store, seeds=1, probes={"enabled": False},
                 reporters=["kmeans", {"name": "kmeans", "method": "kmeans-huge",
                                       "params": {"n_clusters": 5000}}])
    result = run_sweep(spec, progress=False)
    assert result.ran == 4 and len(result.failures) == 2
    assert set(result.failures["method"]) == {"kmeans-huge"}
    assert result.failures["error"].str.contains("needs at least 5000 rows").all()
    assert set(result.table["method"]) == {"kmeans"} and len(result.table) == 2 * 8
    recorded = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert [r["layer"] for r in recorded] == LAYERS
    assert "failed cells (2" in result.summary() and "5000 rows" in result.summary()
    retry = run_sweep(spec, resume=True, progress=False)  # failures are tried again
    assert (retry.ran, retry.skipped, len(retry.failures)) == (2, 2, 2)


def test_parallel_processes_give_the_same_table(reference, store, tmp_path, worker_check):
    pids = tmp_path / "pids"
    pids.mkdir()
    spec = sweep(tmp_path / "out", store)
    spec["reporters"] = spec["reporters"] + [
        {"name": worker_check, "method": "pid", "params": {"pid_dir": str(pids)}}]
    result = run_sweep(spec, jobs=2, progress=False)
    assert result.ran == N_CELLS + 2 * 2 and result.failures.empty
    ran_in = {int(p.name) for p in pids.iterdir()}
    assert ran_in and os.getpid() not in ran_in  # the cells ran in worker processes
    table = result.table[result.table["method"] != "pid"]
    pd.testing.assert_frame_equal(stable(table), stable(reference.table))


def test_a_cell_that_kills_its_worker_fails_alone(store, tmp_path, worker_check):
    pids = tmp_path / "pids"
    pids.mkdir()
    spec = sweep(tmp_path / "out", store, seeds=1, probes={"enabled": False},
                 data={"store": str(store.root), "layers": [LAYERS[1]]},
                 reporters=["kmeans",
                            {"name": worker_check, "method": "pid",
                             "params": {"pid_dir": str(pids)}},
                            {"name": worker_check, "method": "killer",
                             "params": {"kill_unless_pid": os.getpid()}}])
    result = run_sweep(spec, jobs=2, progress=False)
    assert result.ran == 3
    assert list(result.failures["method"]) == ["killer"]
    assert "worker process died" in result.failures["error"].iloc[0]
    assert set(result.table["method"]) == {"kmeans", "pid"}
    assert os.getpid() not in {int(p.name) for p in pids.iterdir()}
    assert len(list((tmp_path / "out" / "cells").glob("*.error.json"))) == 1


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_backend_gives_the_same_table(local_ray, reference, store, tmp_path):
    result = run_sweep(sweep(tmp_path / "out", store), backend="ray", progress=False)
    assert result.ran == N_CELLS and result.failures.empty
    pd.testing.assert_frame_equal(stable(result.table), stable(reference.table))
    assert local_ray.is_initialized()  # a cluster the caller started is left running


@pytest.mark.slow
def test_ray_started_by_the_sweep_is_shut_down(store, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    start = ray.init
    monkeypatch.setattr(ray, "init", lambda **kwargs: start(num_cpus=2, **kwargs))
    spec = sweep(tmp_path / "out", store, seeds=1, probes={"enabled": False},
                 reporters=["kmeans"], data={"store": str(store.root), "layers": [LAYERS[1]]})
    result = run_sweep(spec, backend="ray", progress=False)
    assert result.ran == 1 and result.failures.empty and len(result.table) == 8
    assert not ray.is_initialized()  # the sweep started it, so the sweep shut it down


def test_ray_missing_says_how_to_install(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ActclustError, match=r"pip install 'actclust\[ray\]'"):
        run_sweep(sweep(tmp_path / "out", store), backend="ray", progress=False)
    assert not (tmp_path / "out").exists()


def test_command_line(store, tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    path.write_text(textwrap.dedent(f"""
        name = "cli"
        out = "results"
        labels = "topic"
        seeds = [0]
        reporters = ["kmeans", "does-not-cluster-pca-is-fine"]
        [data]
        store = "{store.root}"
        layers = "blocks.5.*"
        [probes]
        enabled = false
    """))
    parser = argparse.ArgumentParser(prog="actclust")
    add_command(parser.add_subparsers())
    args = parser.parse_args(["sweep", str(path), "--quiet", "--no-report"])
    with pytest.raises(ActclustError, match="unknown reporter 'does-not-cluster-pca-is-fine'"):
        args.func(args)
    path.write_text(path.read_text().replace('"does-not-cluster-pca-is-fine"', '"pca"'))
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "2 cells run" in out and "blocks.5.hook_out" in out and "explained_variance" in out
    table = pd.read_parquet(tmp_path / "results" / "results.parquet")
    assert set(table["layer"]) == {"blocks.5.hook_out"}
    args = parser.parse_args(["sweep", str(path), "--quiet", "--no-report", "--resume"])
    assert args.func(args) == 0
    assert "0 cells run, 2 already done" in capsys.readouterr().out


def test_bad_input_fails_before_any_work(store, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ActclustError, match="layer 'blocks.9.hook_out' is not in store"):
        run_sweep(sweep(out, store, data={"store": str(store.root),
                                          "layers": ["blocks.9.hook_out"]}), progress=False)
    model = {"model": "minilm", "dataset": "topics", "pool": "mean", "limit": 50}
    with pytest.raises(ActclustError, match="'blocks.9.hook_out' is not a hook point"):
        run_sweep(sweep(out, store, data={**model, "layers": ["blocks.9.hook_out"]}),
                  progress=False)
    with pytest.raises(ActclustError, match="label column 'colour' is not in dataset"):
        run_sweep(sweep(out, store, labels=["colour"], data={**model, "layers": LAYERS}),
                  progress=False)
    with pytest.raises(ActclustError, match="label column 'colour' is not in store"):
        run_sweep(sweep(out, store, labels=["colour"]), progress=False)
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ActclustError, match="not empty and holds no sweep"):
        run_sweep(sweep(out, store), progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_capture_once_then_reuse_a_fitting_store(store, tmp_path):
    data = {"model": "minilm", "dataset": "topics", "layers": ["blocks.5.hook_out"],
            "pool": "mean", "limit": 60}
    spec = sweep(tmp_path / "out", store, data=data, seeds=1, probes={"enabled": False},
                 reporters=["kmeans"])
    first = run_sweep(spec, progress=False)
    manifest = (tmp_path / "out" / "store" / "manifest.json").read_text()
    assert first.ran == 1 and len(first.table) == 8
    spec["reporters"] = ["kmeans", {"name": "gmm", "params": {"covariance_type": "diag"}}]
    second = run_sweep(spec, resume=True, progress=False)
    assert (second.ran, second.skipped) == (1, 1)
    assert (tmp_path / "out" / "store" / "manifest.json").read_text() == manifest
    # A store given by path is used when its manifest fits: a subset of its layers...
    before = (store.root / "manifest.json").read_text()
    fits = sweep(tmp_path / "out2", store, seeds=1, probes={"enabled": False},
                 reporters=["kmeans"], data={**data, "limit": 200, "store": str(store.root)})
    assert run_sweep(fits, progress=False).ran == 1
    assert (store.root / "manifest.json").read_text() == before
    # ...and never overwritten when it does not.
    with pytest.raises(ActclustError, match="holds a different capture \\(documents"):
        run_sweep({**fits, "out": str(tmp_path / "out3"),
                   "data": {**fits["data"], "limit": 100}}, progress=False)


def test_interrupted_capture_into_a_given_store_resumes(tmp_path, monkeypatch):
    given = tmp_path / "given"
    spec = {"name": "t", "out": str(tmp_path / "out"), "labels": "topic", "seeds": 1,
            "data": {"model": "minilm", "dataset": "topics", "layers": ["blocks.5.hook_out"],
                     "pool": "mean", "limit": 40, "store": str(given)},
            "reporters": ["kmeans"], "probes": {"enabled": False}, "run": {"report": False}}

    def killed(*args, **kwargs):  # the kill comes after the manifest is written
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("actclust.capture"), "_run", killed)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, progress=False)
    assert json.loads((given / "manifest.json").read_text())["complete"] is False
    monkeypatch.undo()
    result = run_sweep(spec, resume=True, progress=False)
    assert result.ran == 1 and len(result.table) == 8
    assert json.loads((given / "manifest.json").read_text())["complete"] is True
    changed = {**spec, "data": {**spec["data"], "pool": "last"}}  # never overwritten
    with pytest.raises(ActclustError, match="holds a different capture \\(pool"):
        run_sweep({**changed, "out": str(tmp_path / "out2")}, progress=False)


def test_clustering_without_labels_fails_before_any_work(tmp_path):
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["a cat sat", "a dog ran", "the sun rose", "rain fell"]}).to_csv(
        texts, index=False)
    spec = {"out": str(tmp_path / "out"), "reporters": ["kmeans"], "probes": {"enabled": False},
            "data": {"model": "minilm", "dataset": str(texts), "layers": "blocks.5.hook_out",
                     "pool": "mean"}}
    with pytest.raises(ActclustError, match="no label columns to score clusters against"):
        run_sweep(spec, progress=False)
    assert not (tmp_path / "out").exists()


def test_report_is_written_at_the_end(store, tmp_path, monkeypatch):
    import actclust.viz

    calls = []

    def fake_report(store_, results=None, out="report.html"):
        calls.append((store_.root, list(results.columns), len(results)))
        out.write_text("<html></html>")
        return out

    monkeypatch.setattr(actclust.viz, "write_report", fake_report, raising=False)
    spec = sweep(tmp_path / "out", store, seeds=1, run={"report": True},
                 probes={"enabled": False})
    result = run_sweep(spec, progress=False)
    assert result.report_path == tmp_path / "out" / "report.html"
    assert result.report_path.exists()
    assert calls == [(store.root, RESULT_COLUMNS, len(result.table) - 2 * 3)]  # no pca rows
    again = run_sweep(spec, resume=True, progress=False)  # nothing new: not redrawn
    assert again.report_path == result.report_path and len(calls) == 1
    monkeypatch.setitem(sys.modules, "actclust.viz", None)  # no viz: silently no report
    third = run_sweep(spec, overwrite=True, progress=False)
    assert third.report_path is None and third.ran == 8


def test_several_models_get_a_store_each(tiny_models, tmp_path):
    data = {"models": ["minilm", str(tiny_models["gpt2"])], "dataset": "topics",
            "layers": "blocks.0.hook_resid_post", "pool": "mean", "limit": 40}
    spec = {"out": str(tmp_path / "out"), "data": data, "labels": "topic", "seeds": 1,
            "reporters": ["kmeans"], "probes": {"enabled": False}, "run": {"report": False}}
    result = run_sweep(spec, progress=False)
    assert list(result.table["model"].unique()) == data["models"]
    assert sorted(p.name for p in (tmp_path / "out" / "stores").iterdir()) == ["gpt2", "minilm"]
    assert result.ran == 2 and "model minilm" in result.summary()


def test_a_ridge_probe_sweep_matches_compare_with_the_ridge_probe(store, tmp_path):
    from actclust.compare import compare
    from actclust.probes import RidgeProbe

    spec = sweep(tmp_path / "out", store, reporters=[], seeds=[1],
                 probes={"kind": "ridge", "alphas": [1.0, 0.01]},
                 data={"store": str(store.root), "layers": ["blocks.5.hook_out"]})
    table = run_sweep(spec, progress=False).table

    direct = compare(store, "topic", layers="blocks.5.hook_out", reporters=[], seeds=[1],
                     probe=RidgeProbe(alphas=(1.0, 0.01), random_state=1), progress=False)
    got = table.set_index("metric")["value"]
    want = direct.set_index("metric")["value"]
    assert got["probe_accuracy"] == pytest.approx(want["probe_accuracy"])
    assert got["control_accuracy"] == pytest.approx(want["control_accuracy"])
