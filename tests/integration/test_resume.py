"""A capture killed with SIGKILL and resumed ends with exactly the rows of an uninterrupted run;
`actclust verify` names a corrupted shard. The kills run the CLI in subprocesses: slow."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from actclust import ActivationStore
from actclust.cli import main
from actclust.store import verify_store

LAYERS = "blocks.0.hook_out,blocks.3.hook_out"


def cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "actclust.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, **kwargs)


def capture_args(data, out):
    return ["capture", "--model", "minilm", "--dataset", data, "--layers", LAYERS,
            "--out", out, "--shard-rows", 400, "--batch-size", 4, "--quiet"]


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(0)
    words = "the a storm bank match flour sauce rates north rain dog cat scored".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(5, 30))) + "."
             for _ in range(300)]
    path = root / "texts.jsonl"
    pd.DataFrame({"text": texts, "group": [i % 4 for i in range(300)]}).to_json(
        path, orient="records", lines=True)
    return path


@pytest.fixture(scope="module")
def uninterrupted(texts_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "store"
    proc = cli(*capture_args(texts_file, out))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return ActivationStore(out)


def kill_after_shards(proc, out, shards: int, timeout=240):
    """SIGKILL the capture once the manifest lists ``shards`` committed shards."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            done = len(json.loads((out / "manifest.json").read_text()).get("shards_done", []))
        except (OSError, ValueError):
            done = 0
        if done >= shards:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()  # reaps it and closes its pipes
            return
        if proc.poll() is not None:
            pytest.fail(f"capture ended before it could be killed: {proc.communicate()[1]}")
        time.sleep(0.005)
    pytest.fail("capture did not progress")


def assert_same_store(a: ActivationStore, b: ActivationStore):
    pd.testing.assert_frame_equal(a.rows.to_pandas(), b.rows.to_pandas())
    assert a.layers == b.layers
    for layer in a.layers:
        np.testing.assert_array_equal(a.layer(layer).to_numpy(), b.layer(layer).to_numpy())
        assert [s["xxh3_128"] for s in a.manifest["layers"][layer]["shards"]] == \
               [s["xxh3_128"] for s in b.manifest["layers"][layer]["shards"]]


@pytest.mark.slow
def test_killed_capture_resumes_to_the_uninterrupted_result(texts_file, uninterrupted,
                                                           tmp_path, capsys):
    out = tmp_path / "store"
    n_shards = len(uninterrupted.manifest["plan"])
    assert n_shards >= 6
    # killed twice at different points, then resumed to the end
    for shards in (1, n_shards // 2):
        proc = cli(*capture_args(texts_file, out), *(["--resume"] if shards > 1 else []))
        kill_after_shards(proc, out, shards)
        manifest = json.loads((out / "manifest.json").read_text())
        assert not manifest["complete"]
        assert not (out / "rows.parquet").exists()
        listed = {s["file"] for s in manifest["layers"]["blocks.0.hook_out"]["shards"]}
        visible = {p.name for p in (out / "layers" / "blocks.0.hook_out").iterdir()
                   if not p.name.startswith(".")}
        assert visible <= listed | {f"{i:05d}.npy" for i in range(n_shards)}
    assert main(list(map(str, capture_args(texts_file, out)))) == 2
    assert "--resume" in capsys.readouterr().err
    proc = cli(*capture_args(texts_file, out), "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert verify_store(out) == []
    assert_same_store(ActivationStore(out), uninterrupted)
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and not (out / "rows.parts").exists()


@pytest.mark.slow
def test_resume_refuses_a_different_capture(texts_file, uninterrupted, tmp_path, capsys):
    out = tmp_path / "store"
    proc = cli(*capture_args(texts_file, out))
    kill_after_shards(proc, out, 1)
    args = list(map(str, capture_args(texts_file, out)))
    args[args.index(LAYERS)] = "blocks.1.hook_out"
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "different capture" in err and "--overwrite" in err


def test_verify_cli_names_the_bad_shard(minilm_topics_copy, capsys):
    out = minilm_topics_copy.root
    assert main(["verify", str(out)]) == 0
    assert "OK" in capsys.readouterr().out
    shard = out / "layers" / "blocks.3.hook_out" / "00002.npy"
    data = bytearray(shard.read_bytes())
    data[200] ^= 1
    shard.write_bytes(bytes(data))
    assert main(["verify", str(out)]) == 1
    assert "layers/blocks.3.hook_out/00002.npy: checksum mismatch" in capsys.readouterr().err
