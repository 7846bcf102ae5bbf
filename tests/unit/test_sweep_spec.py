"""The sweep file: every key checked before any work, errors that name the key and line."""

import argparse

import pytest

from actclust.errors import ActclustError
from actclust.sweep import EXAMPLE, add_command, load_sweep

BASE = 'out = "o"\n[data]\nstore = "s"\n'


def test_example_parses_and_expands_its_grid():
    spec = load_sweep(EXAMPLE)
    assert spec.name == "topics-layers"
    assert spec.models == ["minilm"] and spec.capture["pool"] == "mean"
    assert [r.method for r in spec.reporters] == [
        "kmeans", "gmm(covariance_type=diag)", "gmm(covariance_type=spherical)",
        "agglomerative"]
    assert spec.reporters[0].params == {"n_init": 3}
    assert spec.seeds == [0, 1, 2] and spec.labels == ["topic"]
    assert spec.probes["params"]["Cs"] == (0.1, 1.0, 10.0)
    assert spec.run == {"backend": "local", "jobs": 1, "address": None,
                        "gpus_per_cell": 1.0, "report": True}


def test_relative_paths_are_read_from_the_files_folder(tmp_path):
    path = tmp_path / "conf" / "my-sweep.toml"
    path.parent.mkdir()
    path.write_text(BASE + '[[reporters]]\nname = "kmeans"\n')
    spec = load_sweep(path)
    assert spec.out == path.parent / "o" and spec.store == path.parent / "s"
    assert spec.name == "my-sweep"  # the file's name when none is given


@pytest.mark.parametrize("text, message", [
    ('out = "o"\ncolour = 1\n[data]\nstore = "s"\n', r"line 2: unknown key 'colour'"),
    (BASE + 'polling = "mean"\n', r"line 4: unknown key 'data.polling'; closest valid: pool"),
    (BASE + '[[reporters]]\nname = "kmeans"\n[[reporters]]\nname = "gmm"\nnam = 1\n',
     r"line 8: unknown key 'reporters.nam'"),
    (BASE + '[[reporters]]\nname = "kmeans"\nparams = { n_initt = 3 }\n',
     r"line 6: kmeans has no parameter 'n_initt'; closest valid: n_init"),
    (BASE + '[[reporters]]\nname = "gmm"\ngrid = { covariance_type = [] }\n',
     r"line 6: grid.covariance_type is empty"),
    (BASE + '[[reporters]]\nname = "gmm"\ngrid = { covariance_type = "diag" }\n',
     r"line 6: grid.covariance_type must be a list"),
    (BASE + '[[reporters]]\nname = "gmm"\nparams = { covariance_type = "bogus" }\n',
     r"line 6: gmm: .*covariance_type"),
    (BASE + '[[reporters]]\nname = "kmeanz"\n', r"line 5: unknown reporter 'kmeanz'"),
    (BASE + '[[reporters]]\nname = "kmeans"\nparams = { random_state = 1 }\n',
     r"random_state is set from seeds"),
    (BASE + '[probes]\nCss = [1.0]\n', r"line 5: unknown key 'probes.Css'; closest valid: Cs"),
    (BASE + '[run]\nbackend = "spark"\n', r"line 5: run.backend must be one of local, ray"),
    (BASE + '[run]\njobs = 0\n', r"run.jobs must be an integer >= 1"),
    ('seeds = []\n' + BASE, r"line 1: seeds must be a count"),
    ('seeds = 0\n' + BASE, r"seeds = 0: need at least 1"),
    (BASE + '[probes]\nenabled = false\n', r"nothing to run"),
    ('out = "o"\n[data]\nmodel = "minilm"\nlayers = ["x"]\n', r"a model needs a dataset"),
    ('out = "o"\n[data]\nmodel = "minilm"\ndataset = "topics"\n', r"which layers"),
    (BASE + 'pool = "mean"\n', r"data.pool is a capture setting, but no model"),
    ('[data]\nstore = "s"\n', r"no output folder"),
    ('out = "o"\n', r"nothing to sweep over"),
    (BASE + '[[reporters]]\nname = "kmeans"\n[[reporters]]\nname = "kmeans"\n',
     r"both called 'kmeans'.*method ="),
    ('out = "o"\n[data\n', r"not valid TOML"),
    # keys written quoted, dotted, or inside a top-level array still give their line
    (BASE + '"polling" = "mean"\n', r"line 4: unknown key 'data.polling'"),
    ('out = "o"\ndata.store = "s"\ndata.polling = 1\n', r"line 3: unknown key 'data.polling'"),
    (BASE.replace("[data]", 'reporters = [\n  { name = "kmeans" },\n  { name = "gmm", '
                  'nam = 1 },\n]\n[data]'), r"line 4: unknown key 'reporters.nam'"),
    ('reporters = ["kmeans", "kmeanz"]\n' + BASE, r"line 1: unknown reporter 'kmeanz'"),
    # repeated values say which value
    (BASE + '[[reporters]]\nname = "gmm"\ngrid = { covariance_type = ["diag", "diag"] }\n',
     r"line 6: grid.covariance_type lists 'diag' twice"),
    ('labels = ["topic", "topic"]\n' + BASE, r"line 1: labels lists 'topic' twice"),
    ('seeds = [1, 1]\n' + BASE, r"line 1: seeds lists 1 twice"),
    ('seeds = [-1]\n' + BASE, r"line 1: seed -1 is out of range"),
    (f'seeds = [{2 ** 32}]\n' + BASE, r"seed 4294967296 is out of range"),
    (BASE + '[probes]\nrandom_state = 3\n', r"line 5: random_state is set from seeds"),
])
def test_bad_input_names_the_key_and_line(text, message):
    with pytest.raises(ActclustError, match=message):
        load_sweep(text)


def test_a_dict_is_checked_the_same_way():
    spec = load_sweep({"out": "o", "data": {"store": "s"}, "seeds": [3, 5],
                       "reporters": [{"name": "kmeans", "method": "km",
                                      "grid": {"n_clusters": [2, 4]}}]})
    assert [(r.method, r.params) for r in spec.reporters] == [
        ("km(n_clusters=2)", {"n_clusters": 2}), ("km(n_clusters=4)", {"n_clusters": 4})]
    assert spec.seeds == [3, 5]
    with pytest.raises(ActclustError, match="unknown key 'data.modle'"):
        load_sweep({"out": "o", "data": {"store": "s", "modle": "x"}})


def test_missing_file_says_how_to_start():
    with pytest.raises(ActclustError, match="does not exist.*--print-example"):
        load_sweep("no-such-sweep.toml")


def test_command_prints_the_example(capsys):
    parser = argparse.ArgumentParser(prog="actclust")
    add_command(parser.add_subparsers())
    args = parser.parse_args(["sweep", "--print-example"])
    assert args.func(args) == 0
    assert capsys.readouterr().out == EXAMPLE
    args = parser.parse_args(["sweep"])
    with pytest.raises(ActclustError, match="no sweep file"):
        args.func(args)
    with pytest.raises(SystemExit):  # --resume and --overwrite exclude each other
        parser.parse_args(["sweep", "s.toml", "--resume", "--overwrite"])


def test_cells_that_train_on_a_gpu_ask_ray_for_one():
    from actclust.sweep.backends import needs_gpu

    def cell(reporter, device):
        return {"kind": "reporter", "reporter": reporter, "full_params": {"device": device}}

    assert needs_gpu(cell("dec", "auto"), cluster_gpus=2)
    assert not needs_gpu(cell("dec", "auto"), cluster_gpus=0)
    assert not needs_gpu(cell("kmeans", "auto"), cluster_gpus=2)  # faiss-cpu: no GPU use
    assert needs_gpu(cell("kmeans", "cuda"), cluster_gpus=2)
    assert not needs_gpu(cell("dec", "cpu"), cluster_gpus=2)
    assert not needs_gpu({"kind": "probe"}, cluster_gpus=2)


def test_bundled_dataset_names_win_over_folders(tmp_path):
    (tmp_path / "topics").mkdir()  # say, the output folder of an earlier run
    path = tmp_path / "sweep.toml"
    path.write_text('out = "topics"\n[data]\nmodel = "minilm"\ndataset = "topics"\n'
                    'layers = "blocks.5.hook_out"\n[[reporters]]\nname = "kmeans"\n')
    assert load_sweep(path).dataset == "topics"
    path.write_text(path.read_text().replace('dataset = "topics"', 'dataset = "mine.csv"'))
    assert load_sweep(path).dataset == str(tmp_path / "mine.csv")


def test_model_directories_are_read_from_the_files_folder(tmp_path):
    path = tmp_path / "conf" / "sweep.toml"
    path.parent.mkdir()
    path.write_text('out = "o"\n[data]\nmodels = ["minilm", "tiny-gpt2"]\n'
                    'dataset = "topics"\nlayers = "blocks.0.hook_resid_post"\n'
                    '[[reporters]]\nname = "kmeans"\n')
    spec = load_sweep(path)
    assert spec.models == ["minilm", "tiny-gpt2"]  # the table's names, as written
    assert spec.model_paths == {"minilm": "minilm",
                                "tiny-gpt2": str(path.parent / "tiny-gpt2")}


def test_backend_and_jobs_are_checked_in_one_place():
    from actclust.sweep.spec import check_run

    check_run("ray", 3)
    with pytest.raises(ActclustError, match="backend must be one of local, ray, got 'spark'"):
        check_run("spark", 1)
    parser = argparse.ArgumentParser(prog="actclust")
    add_command(parser.add_subparsers())
    args = parser.parse_args(["sweep", "s.toml", "--jobs", "0"])
    with pytest.raises(ActclustError, match="--jobs must be an integer >= 1, got 0"):
        args.func(args)


def test_probe_cells_take_their_seed_whatever_the_probe_options(monkeypatch):
    import importlib

    from actclust.sweep.cells import _compute

    seen = []
    monkeypatch.setattr(importlib.import_module("actclust.compare"), "probe_cell",
                        lambda store, layer, label, seed, probe, group_column: seen.append(
                            (seed, probe.random_state, probe.cv, probe.Cs)) or [])
    for seed in (0, 7):
        cell = {"kind": "probe", "layer": "h", "label": "y", "seed": seed,
                "probe_params": {"cv": 3, "Cs": [0.1, 1.0]}, "group_column": None}
        _compute(cell, store=None)
    assert seen == [(0, 0, 3, (0.1, 1.0)), (7, 7, 3, (0.1, 1.0))]


def test_key_leaves_out_settings_that_do_not_change_results():
    from actclust.sweep.cells import NOT_IN_KEY_PARAMS, cell_key

    assert set(NOT_IN_KEY_PARAMS) == {"progress", "verbose", "memory_budget_gb"}
    cell = {"kind": "reporter", "layer": "h", "seed": 0, "params": {"n_init": 3},
            "full_params": {"n_init": 3, "verbose": 0, "progress": False}}
    quiet = {**cell, "full_params": {"n_init": 3, "verbose": 2, "progress": True},
             "store": "/elsewhere"}
    assert cell_key(cell) == cell_key(quiet)
    assert cell_key(cell) != cell_key({**cell, "params": {"n_init": 4}})


def test_cell_files_are_written_atomically_under_unique_names(tmp_path, monkeypatch):
    import actclust._util.files
    from actclust.sweep import cells

    renamed, synced = [], []
    real_replace = cells.os.replace
    monkeypatch.setattr(cells.os, "replace",
                        lambda a, b: renamed.append(str(a)) or real_replace(a, b))
    monkeypatch.setattr(actclust._util.files, "fsync_dir", lambda d: synced.append(d))
    cell = {"key": "k", "model": "m", "layer": "h", "method": "gmm", "seed": 0}
    cells.write_failure(tmp_path, cell, "ValueError: one")
    cells.write_failure(tmp_path, cell, "ValueError: two")
    assert len(set(renamed)) == 2 and all(n.endswith(".tmp") for n in renamed)
    assert synced == [tmp_path, tmp_path]  # the renames are made durable
    assert cells.read_failure(tmp_path, "k")["error"] == "ValueError: two"
    assert [p.name for p in tmp_path.iterdir()] == ["k.error.json"]


def test_duplicate_cells_are_run_once():
    from actclust.sweep.cells import unique

    cells = [{"key": "a", "n": 1}, {"key": "b"}, {"key": "a", "n": 2}]
    assert unique(cells) == [{"key": "a", "n": 1}, {"key": "b"}]


def test_the_package_imports_lazily():
    import subprocess
    import sys

    code = ("import sys, actclust.sweep.cells; assert 'torch' not in sys.modules, 'torch'; "
            "import actclust; assert 'capture' in dir(actclust); "
            "import actclust.capture, actclust.compare; "
            "assert callable(actclust.capture) and callable(actclust.compare); "
            "from actclust import ActivationStore, capture, compare; "
            "assert capture is actclust.capture and compare.__name__ == 'compare'; "
            "assert sys.modules['actclust.capture'].capture is capture")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.parametrize("probes, kind, params", [
    ("", "auto", {}),
    ('kind = "ridge"\nalphas = [1.0, 0.1]\n', "ridge", {"alphas": (1.0, 0.1)}),
    ("Cs = [0.1, 1.0]\n", "logistic", {"Cs": (0.1, 1.0)}),   # a file from before kinds
    ("alpha = 0.5\n", "ridge", {"alpha": 0.5}),
])
def test_the_probe_kind_is_read_or_named_by_its_settings(probes, kind, params):
    spec = load_sweep(BASE + "[probes]\n" + probes)
    assert spec.probes["kind"] == kind and spec.probes["params"] == params


@pytest.mark.parametrize("probes, message", [
    ('kind = "svm"\n', "probes.kind must be one of auto, logistic, ridge"),
    ('kind = "auto"\nCs = [1.0]\n', "probe settings need a fixed probe"),
    ('kind = "ridge"\nCs = [1.0]\n', "unknown key 'probes.Cs'"),
    ('kind = "ridge"\nalphas = []\n', "probes.alphas must be a non-empty list"),
])
def test_bad_probe_kinds_are_one_line_errors(probes, message):
    with pytest.raises(ActclustError, match=message):
        load_sweep(BASE + "[probes]\n" + probes)
