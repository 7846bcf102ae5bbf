"""The command line: listings, capture from a user file, info, and clear errors (exit 2)."""

import errno

import numpy as np
import pandas as pd
import pytest

import actclust
from actclust.cli import main
from actclust.store.writer import ShardWriter


def test_models_and_datasets_listings(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "minilm" in out and "digits-mlp" in out
    assert main(["models", "minilm"]) == 0
    out = capsys.readouterr().out
    assert "blocks.5.hook_resid_post  <- output of encoder.layer.5" in out
    assert "blocks.0.attn.hook_z  <- input of encoder.layer.0.attention.output.dense" in out
    assert "\n  encoder.layer.0.output\n" not in out
    assert main(["models", "minilm", "--all"]) == 0
    assert "\n  encoder.layer.0.output\n" in capsys.readouterr().out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("topics", "tokens", "truth", "digits"):
        assert f"  {name}" in out


def test_capture_a_user_csv_then_info(tmp_path, capsys):
    csv = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["great phone", "battery died fast", "ok screen"],
                  "stars": [5, 1, 3]}).to_csv(csv, index=False)
    out = tmp_path / "store"
    code = main(["capture", "--model", "minilm", "--dataset", str(csv), "--text-column",
                 "review", "--layers", "blocks.4.hook_resid_post", "--pool", "cls",
                 "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "wrote 3 rows x 1 layers" in capsys.readouterr().out
    store = actclust.ActivationStore(out)
    assert store.labels("stars").tolist() == [5, 1, 3]
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "rows       3" in info and "blocks.4.hook_resid_post" in info and "3x384" in info
    assert "pool=cls" in info and "complete   True" in info


@pytest.mark.parametrize("argv,message", [
    (["--layers", "blocks.9.hook_out"], "layer 'blocks.9.hook_out' is not a hook point"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--dataset", "topix"], "topix"),
    (["--text-column", "body"], "body"),
])
def test_capture_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    csv = tmp_path / "t.csv"
    pd.DataFrame({"text": ["a b c"]}).to_csv(csv, index=False)
    args = {"--model": "minilm", "--dataset": str(csv), "--layers": "blocks.0.hook_out",
            "--out": str(tmp_path / "s")}
    args.update(dict(zip(argv[::2], argv[1::2])))
    code = main(["capture", *[x for kv in args.items() for x in kv], "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("actclust: error: ")
    assert not (tmp_path / "s").exists()


def test_info_on_a_non_store(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "not an actclust store" in capsys.readouterr().err


def test_disk_full_leaves_no_visible_partial_shard_and_resumes(tmp_path, monkeypatch):
    texts = [f"sentence number {i} about the weather and the sea" for i in range(40)]
    clean = actclust.capture("minilm", texts, "blocks.0.hook_out", out=tmp_path / "clean",
                             shard_rows=60, batch_size=4, progress=False)
    calls = {"n": 0}
    real_write = ShardWriter._write

    def failing_write(self, data):
        calls["n"] += 1
        if calls["n"] == 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, data)

    monkeypatch.setattr(ShardWriter, "_write", failing_write)
    out = tmp_path / "s"
    with pytest.raises(actclust.errors.ActclustError, match="disk full.*--resume"):
        actclust.capture("minilm", texts, "blocks.0.hook_out", out=out, shard_rows=60,
                         batch_size=4, progress=False)
    layer_dir = out / "layers" / "blocks.0.hook_out"
    manifest = actclust.ActivationStore(out, allow_incomplete=True).manifest
    listed = {s["file"] for s in manifest["layers"]["blocks.0.hook_out"]["shards"]}
    assert {p.name for p in layer_dir.iterdir()} == listed  # no partial or hidden file
    assert not manifest["complete"] and len(listed) >= 1
    monkeypatch.setattr(ShardWriter, "_write", real_write)
    resumed = actclust.capture("minilm", texts, "blocks.0.hook_out", out=out, shard_rows=60,
                               batch_size=4, progress=False, resume=True)
    np.testing.assert_array_equal(resumed.layer("blocks.0.hook_out").to_numpy(),
                                  clean.layer("blocks.0.hook_out").to_numpy())
    pd.testing.assert_frame_equal(resumed.rows.to_pandas(), clean.rows.to_pandas())
