"""Bad and crafted input, as a hostile or careless user would give it.

Every case asserts the same contract: a non-zero exit, one line naming the problem, no
traceback, every file outside the command's target byte-identical afterwards, and no file
created outside it. Most cases run the CLI in-process on a small real store captured from a
tiny torch model; the capture cases use the bundled MiniLM on two documents.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import actclust
from actclust.cli import main
from tests.files import snapshot

LAYER = "1"


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """A real store: 40 rows of a 6-16-8 MLP's layers "0" and "1", three shards each."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    X = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    root = tmp_path_factory.mktemp("hostile") / "store"
    actclust.capture(net, X, ["0", "1"], labels={"sign": X[:, 0] > 0}, out=root,
                     shard_rows=16, progress=False, device="cpu")
    return root


@pytest.fixture
def sandbox(tmp_path, small_store, monkeypatch):
    """A folder a user might run commands in: a store, their own files, a folder that looks
    like a store to a careless eye (a browser extension with a manifest.json), and a home."""
    box = tmp_path / "box"
    shutil.copytree(small_store, box / "store")
    (box / "notes.txt").write_text("my notes\n")
    ext = box / "extension"
    ext.mkdir()
    (ext / "manifest.json").write_text(json.dumps({"manifest_version": 3, "name": "ext"}))
    (ext / "background.js").write_text("console.log(1)\n")
    outside = box / "outside"
    outside.mkdir()
    np.save(outside / "secret.npy", np.full((16, 8), 7.0, np.float32))
    (outside / "keep.txt").write_text("do not delete\n")
    (box / "home").mkdir()
    monkeypatch.setenv("HOME", str(box / "home"))
    monkeypatch.chdir(box)
    return box


def run(argv, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse refuses an option by exiting
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.err


def assert_refused(code: int, err: str, *words: str) -> None:
    lines = [line for line in err.splitlines()
             if line.strip() and not line.startswith("actclust: warning:")]
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("actclust") and "error:" in lines[0], err
    for word in words:
        assert word.lower() in lines[0].lower(), (word, err)


def refused_untouched(sandbox, capsys, argv, *words, target=None):
    """Run ``argv`` in the sandbox: it must be refused and change nothing (but ``target``)."""
    before = snapshot(sandbox)
    code, err = run(argv, capsys)
    assert_refused(code, err, *words)
    after = snapshot(sandbox)
    if target is not None:
        target = str(Path(target).resolve().relative_to(sandbox.resolve()))
        before = {k: v for k, v in before.items() if not k.startswith(target)}
        after = {k: v for k, v in after.items() if not k.startswith(target)}
    assert after == before


def edit_manifest(store: Path, change) -> None:
    path = store / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def shard(store: Path, index: int = 0, layer: str = LAYER) -> Path:
    return store / "layers" / layer / f"{index:05d}.npy"


def capture_args(out, *extra, limit=2):
    return ["capture", "--model", "minilm", "--dataset", "topics", "--limit", str(limit),
            "--layers", "blocks.0.hook_out", "--pool", "mean", "--out", out, "--quiet",
            *extra]


FIT = ["fit", "store", "--layer", LAYER, "--n-clusters", "2"]


# ---------------------------------------------------------------- deleting what is not ours

@pytest.mark.parametrize("out,words", [
    ("extension", ["not an actclust store"]),
    ("", ["empty"]),
    (".", ["working directory"]),
    ("/", ["root"]),
    ("home", ["home"]),
    ("outside", ["not an actclust store"]),
    ("notes.txt", ["not a directory"]),
])
def test_overwrite_refuses_what_is_not_a_store(sandbox, capsys, out, words):
    if out == ".":
        shutil.copy(sandbox / "extension" / "manifest.json", sandbox / "manifest.json")
    refused_untouched(sandbox, capsys, capture_args(out, "--overwrite"), *words)


def test_overwrite_refuses_an_empty_out_in_a_folder_with_a_manifest(sandbox, capsys):
    os.chdir(sandbox / "extension")
    refused_untouched(sandbox, capsys, capture_args("", "--overwrite"), "empty")


def test_overwrite_refuses_a_symlink_to_a_store(sandbox, capsys):
    (sandbox / "link").symlink_to(sandbox / "store")
    refused_untouched(sandbox, capsys, capture_args("link", "--overwrite"), "link")


def test_overwrite_refuses_a_store_holding_a_users_file(sandbox, capsys):
    (sandbox / "store" / "analysis.ipynb").write_text("{}")
    refused_untouched(sandbox, capsys, capture_args("store", "--overwrite"), "analysis.ipynb")


def test_overwrite_refuses_the_folder_above_the_working_directory(sandbox, capsys):
    os.chdir(sandbox / "store" / "layers")
    refused_untouched(sandbox, capsys, capture_args(str(sandbox / "store"), "--overwrite"),
                      "working directory")


def test_resume_refuses_a_folder_with_files_but_no_store(sandbox, capsys):
    refused_untouched(sandbox, capsys, capture_args("outside", "--resume"), "outside")


def test_resume_refuses_a_foreign_manifest(sandbox, capsys):
    refused_untouched(sandbox, capsys, capture_args("extension", "--resume"), "store")


def test_capture_refuses_a_destination_inside_a_store(sandbox, capsys):
    refused_untouched(sandbox, capsys, capture_args("store/layers/new"), "inside the store")


def test_resume_and_overwrite_together_are_refused(sandbox, capsys):
    refused_untouched(sandbox, capsys, capture_args("new", "--resume", "--overwrite"),
                      "not allowed with")


def test_capture_into_an_existing_store_without_a_flag_is_refused(sandbox, capsys):
    refused_untouched(sandbox, capsys, capture_args("store"), "--resume", "--overwrite")


# ---------------------------------------------------------------- paths that leave the store

@pytest.mark.parametrize("file", ["../../../outside/secret.npy", "/etc/passwd",
                                  "00000.npy/../../../../outside/secret.npy", "",
                                  "..", "x\x00.npy", "00000.NPY"])
def test_shard_paths_outside_the_store_are_refused(sandbox, capsys, file):
    edit_manifest(sandbox / "store",
                  lambda m: m["layers"][LAYER]["shards"][0].update(file=file))
    refused_untouched(sandbox, capsys, FIT, "shard")


@pytest.mark.parametrize("name", ["../../outside", "/tmp", "..", "", ".hidden", "a/b"])
def test_layer_names_that_are_paths_are_refused(sandbox, capsys, name):
    def rename(manifest):
        manifest["layers"] = {name: manifest["layers"].pop(LAYER), **manifest["layers"]}
        manifest["capture"]["layers"] = list(manifest["layers"])
    edit_manifest(sandbox / "store", rename)
    refused_untouched(sandbox, capsys, ["fit", "store", "--layer", name, "--n-clusters", "2"],
                      "layer")


def test_a_layer_folder_that_is_a_symlink_is_not_followed(sandbox, capsys):
    layer_dir = sandbox / "store" / "layers" / LAYER
    shutil.rmtree(layer_dir)
    for i in range(3):
        np.save(sandbox / "outside" / f"{i:05d}.npy", np.zeros((16 if i < 2 else 8, 8),
                                                               np.float32))
    layer_dir.symlink_to(sandbox / "outside")
    refused_untouched(sandbox, capsys, FIT, "link")


def test_a_shard_that_is_a_symlink_is_not_followed(sandbox, capsys):
    path = shard(sandbox / "store")
    path.unlink()
    path.symlink_to(sandbox / "outside" / "secret.npy")
    refused_untouched(sandbox, capsys, FIT, "link")


# ---------------------------------------------------------------- trusting shard headers

def _replace_shard(store, array, index=0):
    np.save(shard(store, index), array)


@pytest.mark.parametrize("array,words", [
    (np.zeros((16, 9), np.float32), ["shape"]),
    (np.zeros((16, 8), np.float64), ["dtype"]),
    (np.asfortranarray(np.zeros((16, 8), np.float32)), ["fortran"]),
    (np.zeros((15, 8), np.float32), ["rows"]),
    (np.zeros((16, 2, 4), np.float32), ["shape"]),
])
def test_shards_whose_header_differs_from_the_manifest_are_refused(sandbox, capsys, array,
                                                                    words):
    _replace_shard(sandbox / "store", array, index=1)
    refused_untouched(sandbox, capsys, FIT, "00001.npy", *words)


def test_a_truncated_shard_is_refused(sandbox, capsys):
    path = shard(sandbox / "store")
    path.write_bytes(path.read_bytes()[:200])
    refused_untouched(sandbox, capsys, FIT, "00000.npy")


def test_a_shard_that_is_not_npy_is_refused(sandbox, capsys):
    shard(sandbox / "store").write_bytes(b"\x89PNG not an array at all" * 20)
    refused_untouched(sandbox, capsys, FIT, "00000.npy")


def test_an_object_array_shard_is_refused_without_unpickling(sandbox, capsys):
    np.save(shard(sandbox / "store"), np.array([{"a": 1}] * 16, dtype=object),
            allow_pickle=True)
    refused_untouched(sandbox, capsys, FIT, "00000.npy")


def test_a_row_table_shorter_than_the_layers_fails_before_fitting(sandbox, capsys,
                                                                   monkeypatch):
    rows = pd.read_parquet(sandbox / "store" / "rows.parquet")
    rows.iloc[:30].to_parquet(sandbox / "store" / "rows.parquet", index=False)
    from actclust.reporters import KMeans

    def no_fit(*args, **kwargs):
        raise AssertionError("fit ran on a store whose row table is short")
    monkeypatch.setattr(KMeans, "fit", no_fit)
    refused_untouched(sandbox, capsys, FIT, "rows")


# ---------------------------------------------------------------- malformed manifests

@pytest.mark.parametrize("content,words", [
    ("[1, 2, 3]", ["manifest"]),
    ("{not json", ["manifest"]),
    ("", ["manifest"]),
    ('{"schema_version": 99, "format": "actclust-store"}', ["schema"]),
    ('{"schema_version": "1"}', ["manifest"]),
    ("null", ["manifest"]),
])
def test_unreadable_manifests_are_refused(sandbox, capsys, content, words):
    (sandbox / "store" / "manifest.json").write_text(content)
    refused_untouched(sandbox, capsys, FIT, *words)


@pytest.mark.parametrize("change,words", [
    (lambda m: m.pop("layers"), ["layers"]),
    (lambda m: m.pop("n_rows"), ["n_rows"]),
    (lambda m: m.update(layers=[]), ["layers"]),
    (lambda m: m.update(n_rows="forty"), ["n_rows"]),
    (lambda m: m["layers"][LAYER].update(shards="00000.npy"), ["shards"]),
    (lambda m: m["layers"][LAYER]["shards"][0].update(rows=-3), ["rows"]),
    (lambda m: m["layers"][LAYER].update(dtype="int8"), ["dtype"]),
])
def test_manifests_with_missing_or_mistyped_keys_are_refused(sandbox, capsys, change, words):
    edit_manifest(sandbox / "store", change)
    refused_untouched(sandbox, capsys, FIT, *words)


@pytest.mark.parametrize("command", ["info", "fit", "compare"])
def test_a_store_that_does_not_exist(sandbox, capsys, command):
    argv = {"info": ["info", "nowhere"], "fit": ["fit", "nowhere", "--layer", LAYER],
            "compare": ["compare", "nowhere", "--labels", "sign", "--out", "r.parquet"]}
    refused_untouched(sandbox, capsys, argv[command], "nowhere")


def test_a_store_path_that_is_a_file(sandbox, capsys):
    refused_untouched(sandbox, capsys, ["verify", "notes.txt"], "notes.txt")


def test_garbage_docs_table(sandbox, capsys):
    (sandbox / "store" / "docs.parquet").write_bytes(b"PAR1 garbage")
    refused_untouched(sandbox, capsys, FIT, "parquet")


# ---------------------------------------------------------------- silent substitutions

@pytest.mark.parametrize("extra,words", [
    (["--shard-rows", "0"], ["--shard-rows", "at least 1"]),
    (["--shard-rows", "-5"], ["--shard-rows"]),
    (["--max-length", "0"], ["--max-length"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--limit", "0"], ["--limit"]),
    (["--limit", "ten"], ["--limit", "whole number"]),
    (["--device", "bogus"], ["bogus"]),
    (["--device", "cuda:7"], ["cuda"]),
    (["--max-length", "1"], ["max_length"]),
    (["--max-length", "100000"], ["max_length"]),
])
def test_capture_settings_are_validated(sandbox, capsys, extra, words):
    if extra[:2] == ["--device", "cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has eight GPUs")
    refused_untouched(sandbox, capsys, capture_args("new", *extra), *words)


@pytest.mark.parametrize("extra,words", [
    (["--n-clusters", "0"], ["--n-clusters"]),
    (["--n-clusters", "1"], ["--n-clusters"]),
    (["--seed", "-1"], ["--seed"]),
    (["--layer", "2"], ["not in store"]),
    (["--reporter", "kmeenz"], ["unknown reporter"]),
    (["--labels", "colour"], ["colour"]),
    (["--reporter", "pca"], ["pca"]),
])
def test_fit_settings_are_validated(sandbox, capsys, extra, words):
    argv = ["fit", "store", "--layer", LAYER, *extra]
    refused_untouched(sandbox, capsys, argv, *words)


@pytest.mark.parametrize("extra,words", [
    (["--seeds", "0"], ["--seeds"]),
    (["--n-clusters", "-2"], ["--n-clusters"]),
    (["--labels", "colour"], ["colour"]),
    (["--layers", "blocks.*"], ["blocks.*"]),
])
def test_compare_settings_are_validated(sandbox, capsys, extra, words):
    argv = ["compare", "store", "--labels", "sign", "--out", "r.parquet", *extra]
    refused_untouched(sandbox, capsys, argv, *words)


# ---------------------------------------------------------------- our outputs over our inputs

@pytest.mark.parametrize("out", ["store/rows.parquet", "store/manifest.json",
                                 "store/layers/1/00000.npy", "store/new.parquet"])
def test_fit_never_writes_inside_a_store(sandbox, capsys, out):
    refused_untouched(sandbox, capsys, FIT + ["--out", out], "inside the store")


@pytest.mark.parametrize("out,words", [
    ("outside", ["directory"]),
    ("store/results.parquet", ["inside the store"]),
    ("notes.txt/results.parquet", ["not a folder"]),
    ("", ["empty"]),
])
def test_compare_checks_its_output_before_fitting(sandbox, capsys, monkeypatch, out, words):
    import importlib

    compare_module = importlib.import_module("actclust.compare")  # the module, not the function
    monkeypatch.setattr(compare_module, "compare",
                        lambda *a, **k: pytest.fail("compare ran before --out was checked"))
    refused_untouched(sandbox, capsys, ["compare", "store", "--labels", "sign", "--out", out],
                      *words)


def test_an_output_that_is_a_symlink_is_refused(sandbox, capsys):
    (sandbox / "r.parquet").symlink_to(sandbox / "outside" / "keep.txt")
    refused_untouched(sandbox, capsys, FIT + ["--out", "r.parquet"], "symbolic link")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_an_output_in_a_read_only_folder_is_refused(sandbox, capsys):
    locked = sandbox / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refused_untouched(sandbox, capsys, FIT + ["--out", "locked/r.parquet"], "writable")
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------- input files

@pytest.mark.parametrize("name,content,words", [
    ("missing.csv", None, ["missing.csv"]),
    ("bad.jsonl", "{this is not json\n", ["bad.jsonl"]),
    ("empty.csv", "", ["empty.csv"]),
    ("data.xlsx", "x", [".xlsx"]),
])
def test_capture_from_bad_dataset_files(sandbox, capsys, name, content, words):
    if content is not None:
        (sandbox / name).write_text(content)
    argv = capture_args("new")
    argv[argv.index("topics")] = name
    refused_untouched(sandbox, capsys, argv, *words)


def test_capture_from_a_model_folder_that_does_not_exist(sandbox, capsys):
    argv = capture_args("new")
    argv[argv.index("minilm")] = "no/such/model"
    refused_untouched(sandbox, capsys, argv, "no/such/model")


def test_a_sweep_file_that_is_not_toml(sandbox, capsys):
    (sandbox / "sweep.toml").write_text("[run\nname = \n")
    refused_untouched(sandbox, capsys, ["sweep", "sweep.toml"], "sweep.toml")


def test_a_sweep_file_that_does_not_exist(sandbox, capsys):
    refused_untouched(sandbox, capsys, ["sweep", "nope.toml"], "nope.toml")


# ---------------------------------------------------------------- debug and real processes

def test_debug_shows_the_traceback(sandbox, capsys):
    from actclust.errors import ActclustError

    with pytest.raises(ActclustError):
        main(["fit", "nowhere", "--layer", LAYER, "--debug"])


def test_the_installed_command_fails_in_one_line(sandbox):
    edit_manifest(sandbox / "store",
                  lambda m: m["layers"][LAYER]["shards"][0].update(file="/etc/passwd"))
    before = snapshot(sandbox)
    env = {**os.environ, "PYTHONPATH": str(Path(actclust.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-m", "actclust.cli", *FIT], cwd=sandbox,
                          capture_output=True, text=True, env=env, timeout=300)
    assert_refused(done.returncode, done.stderr, "shard")
    assert done.returncode == 2
    assert snapshot(sandbox) == before


# ---------------------------------------------------------------- resume that tells the truth

def _interrupted_capture(sandbox, capsys, monkeypatch):
    """A MiniLM capture of 4 documents in 2 shards, killed after its first shard."""
    from actclust.store.writer import StoreWriter

    real_commit, calls = StoreWriter.commit_shard, []

    def commit_then_die(self):
        calls.append(1)
        if len(calls) == 2:
            self.abort_shard()
            raise KeyboardInterrupt
        real_commit(self)
    monkeypatch.setattr(StoreWriter, "commit_shard", commit_then_die)
    argv = capture_args("cut", "--shard-rows", "2", limit=4)
    code, err = run(argv, capsys)
    assert code == 130, err
    monkeypatch.setattr(StoreWriter, "commit_shard", real_commit)
    return argv


@pytest.mark.parametrize("damage", ["delete", "truncate", "replace"])
def test_resume_never_marks_a_store_complete_with_a_damaged_finished_shard(
        sandbox, capsys, monkeypatch, damage):
    from actclust.store import verify_store

    argv = _interrupted_capture(sandbox, capsys, monkeypatch)
    done = sandbox / "cut" / "layers" / "blocks.0.hook_out" / "00000.npy"
    assert done.exists()
    if damage == "delete":
        done.unlink()
    elif damage == "truncate":
        done.write_bytes(done.read_bytes()[:-100])
    else:
        np.save(done, np.zeros((2, 384), np.float32))  # right header, wrong values
    before = snapshot(sandbox)
    code, err = run(argv + ["--resume", "--verify"], capsys)
    if code == 0:  # finishing is allowed only if the damaged shard was captured again
        assert verify_store(sandbox / "cut") == []
    else:
        assert_refused(code, err, "00000.npy")
        outside = {k: v for k, v in before.items() if not k.startswith("cut")}
        assert {k: v for k, v in snapshot(sandbox).items() if not k.startswith("cut")} == \
            outside


# ---------------------------------------------------------------- two writers at once

@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_a_second_writer_is_refused_and_the_holder_named(sandbox, capsys, flag):
    from actclust.store.lock import StoreLock

    held = StoreLock(sandbox / "store").acquire()
    try:
        refused_untouched(sandbox, capsys, capture_args("store", flag), str(os.getpid()))
    finally:
        held.release()
    assert not (sandbox / "store" / ".lock").exists()


# ---------------------------------------------------------------- the report's inputs and output

@pytest.mark.parametrize("out,words", [
    ("store/report.html", ["inside the store"]),
    ("outside", ["directory"]),
    ("", ["empty"]),
])
def test_the_report_checks_its_output_first(sandbox, capsys, out, words):
    refused_untouched(sandbox, capsys, ["report", "store", "-o", out, "--map", "pca"], *words)


@pytest.mark.parametrize("table", [
    "not a parquet file",
    pd.DataFrame({"layer": [1], "method": [2.0], "label": [None], "metric": [b"x"],
                  "seed": ["zero"], "value": ["high"]}),
    pd.DataFrame({"layer": ["1"], "nonsense": [1]}),
])
def test_a_results_table_of_the_wrong_shape_or_types(sandbox, capsys, table):
    path = sandbox / "results.parquet"
    if isinstance(table, str):
        path.write_text(table)
    else:
        table.to_parquet(path)
    refused_untouched(sandbox, capsys, ["report", "store", "--results", "results.parquet",
                                        "-o", "r.html", "--map", "pca"], "results")


def test_a_bug_shows_its_traceback_and_exit_status_3(sandbox, capsys, monkeypatch):
    from actclust.cli import commands

    def broken(args):
        raise KeyError("a bug")
    monkeypatch.setattr(commands, "cmd_info", broken)
    code = main(["info", "store"])
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" in err and "KeyError: 'a bug'" in err
    assert err.strip().splitlines()[-1].startswith("actclust: internal error (KeyError)")


# ---------------------------------------------------------------- found by trying harder

@pytest.mark.parametrize("kind", ["fifo", "notes"])
@pytest.mark.parametrize("command", ["fit", "compare", "report"])
def test_outputs_never_replace_a_special_or_foreign_file(sandbox, capsys, kind, command):
    if kind == "fifo":
        os.mkfifo(sandbox / "pipe")
        out = "pipe"
    else:
        out = "notes.txt"
    argv = {"fit": FIT + ["--out", out],
            "compare": ["compare", "store", "--labels", "sign", "--out", out],
            "report": ["report", "store", "-o", out, "--map", "pca"]}[command]
    refused_untouched(sandbox, capsys, argv, out)


def test_compare_with_no_labels_is_refused(sandbox, capsys):
    refused_untouched(sandbox, capsys, ["compare", "store", "--labels", "", "--out",
                                        "r.parquet"], "--labels")


def test_nan_inside_a_shard_with_a_valid_header_is_refused(sandbox, capsys):
    path = shard(sandbox / "store")
    data = bytearray(path.read_bytes())
    data[-32:-28] = np.array([np.nan], np.float32).tobytes()
    path.write_bytes(bytes(data))
    refused_untouched(sandbox, capsys, FIT, "nan")


def test_a_label_column_of_lists_is_refused(sandbox, capsys):
    rows = pd.read_parquet(sandbox / "store" / "rows.parquet")
    rows["sign"] = [[1, 2]] * len(rows)
    rows.to_parquet(sandbox / "store" / "rows.parquet", index=False)
    refused_untouched(sandbox, capsys, FIT + ["--labels", "sign"], "lists")


def test_a_row_column_that_is_not_the_row_numbers_is_refused(sandbox, capsys):
    rows = pd.read_parquet(sandbox / "store" / "rows.parquet")
    rows["row"] = rows["row"].astype(float) + 0.5
    rows.to_parquet(sandbox / "store" / "rows.parquet", index=False)
    refused_untouched(sandbox, capsys, FIT, "row")


def test_verify_reports_each_problem_on_one_line(sandbox, capsys):
    docs = pd.read_parquet(sandbox / "store" / "docs.parquet").drop(columns="doc_id")
    docs.to_parquet(sandbox / "store" / "docs.parquet", index=False)
    code, err = run(["verify", "store"], capsys)
    assert code == 1 and "Traceback" not in err
    assert all(line.startswith(("BAD  ", "store: ")) for line in err.splitlines()), err


def test_a_sweep_never_writes_into_home_or_beside_a_users_hidden_files(sandbox, capsys):
    (sandbox / "home" / ".bashrc").write_text("# mine\n")
    (sandbox / "project" / ".git").mkdir(parents=True)
    for out in ("~", "project"):
        (sandbox / "sweep.toml").write_text(
            f'name = "s"\nout = "{out}"\nlabels = ["sign"]\nseeds = 1\n[data]\n'
            'store = "store"\n[[reporters]]\nname = "kmeans"\n')
        refused_untouched(sandbox, capsys, ["sweep", "sweep.toml"], out.strip("~") or "home")


@pytest.mark.parametrize("bad", [None, "", 3])
def test_the_python_api_refuses_what_is_not_a_store_path(sandbox, bad):
    from actclust.errors import ActclustError

    with pytest.raises(ActclustError):
        actclust.ActivationStore(bad)
    with pytest.raises(ActclustError):
        actclust.ActivationStore("store").layer(bad)


def test_the_python_api_never_captures_into_a_store(sandbox):
    from actclust.errors import ActclustError

    before = snapshot(sandbox)
    net = torch.nn.Sequential(torch.nn.Linear(6, 4))
    X = np.zeros((4, 6), np.float32)
    with pytest.raises(ActclustError, match="inside the store"):
        actclust.capture(net, X, ["0"], out="store/layers/new", progress=False, device="cpu")
    assert snapshot(sandbox) == before
