"""GPT-2- and Llama-shaped Hugging Face models (random weights, built offline): our hooks on
the HF modules give exactly what TransformerLens' bridge shows under the same names."""

import numpy as np
import pytest
import torch

import actclust
from actclust.models import load_target
from tests.conftest import CORPUS

NAMES = ["blocks.1.hook_resid_pre", "blocks.1.hook_resid_mid", "blocks.1.hook_resid_post",
         "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out", "blocks.1.attn.hook_z",
         "blocks.1.mlp.hook_pre", "blocks.1.mlp.hook_post", "blocks.2.hook_resid_post"]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model_and_bridge(request, tiny_models):
    from transformer_lens.model_bridge import TransformerBridge

    path = tiny_models[request.param]
    return path, TransformerBridge.boot_transformers(str(path), device="cpu")


def test_hf_capture_matches_bridge_cache(model_and_bridge, tmp_path):
    path, bridge = model_and_bridge
    target = load_target(str(path))
    assert set(NAMES) <= set(target.hook_points)
    store = actclust.capture(target, CORPUS[:6], NAMES, out=tmp_path / "s", batch_size=4,
                             progress=False)
    rows = store.rows
    for doc in range(6):
        mine = np.nonzero(rows["doc_id"].to_numpy() == doc)[0]
        ids = rows["token_id"].to_numpy()[mine]
        with torch.no_grad():
            _, cache = bridge.run_with_cache(torch.from_numpy(ids)[None])
        for name in NAMES:
            want = cache[name][0].reshape(len(ids), -1).numpy()
            np.testing.assert_allclose(store.layer(name)[mine], want, atol=1e-5,
                                       err_msg=f"{path.name} {name} doc {doc}")


def test_capture_through_the_bridge_stops_early(model_and_bridge, tmp_path):
    _, bridge = model_and_bridge
    fired = []
    handle = bridge.blocks[2].register_forward_hook(lambda *a: fired.append(1))
    try:
        store = actclust.capture(bridge, CORPUS[:5], "blocks.0.hook_resid_post",
                                 pool="last", out=tmp_path / "s", progress=False)
    finally:
        handle.remove()
    assert fired == [] and store.layer("blocks.0.hook_resid_post").shape == (5, 32)
    assert store.manifest["model"]["kind"] == "bridge"


def test_unmapped_architecture_still_offers_module_paths(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    target = load_target(net)
    assert list(target.hook_points) == ["0", "1"]
    store = actclust.capture(net, np.eye(4, dtype=np.float32), "1", out=tmp_path / "s",
                             progress=False)
    with torch.no_grad():
        want = net(torch.eye(4)).numpy()
    np.testing.assert_allclose(store.layer("1").to_numpy(), want, atol=1e-6)
