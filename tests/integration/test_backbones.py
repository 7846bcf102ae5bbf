"""The studied model's own later blocks as a DeepCluster backbone."""

import numpy as np
import pytest
import torch

from actclust.errors import ActclustError
from actclust.metrics import nmi
from actclust.models import load_target
from actclust.reporters import DeepCluster
from actclust.reporters.backbones import following_blocks


def test_blocks_match_the_models_own_encoder_on_one_token():
    model = load_target("minilm").module.eval()
    x = torch.randn(5, 384)
    blocks = following_blocks("minilm", "blocks.2.hook_out").eval()
    with torch.no_grad():
        # blocks 3..5 of the real encoder, on the same one-token sequences
        expected = x[:, None, :]
        for layer in model.encoder.layer[3:]:
            out = layer(expected)
            expected = out[0] if isinstance(out, tuple) else out
        np.testing.assert_allclose(blocks(x).numpy(), expected[:, 0].numpy(), atol=1e-5)
    assert len(following_blocks("minilm", "blocks.2.hook_in").blocks) == 4
    assert len(following_blocks("minilm", "blocks.0.hook_resid_post", n_blocks=2).blocks) == 2


@pytest.mark.parametrize("layer, message", [
    ("blocks.5.hook_out", "last block"),
    ("blocks.2.attn.hook_z", "block boundary"),
])
def test_bad_layers_say_what_to_use(layer, message):
    with pytest.raises(ActclustError, match=message):
        following_blocks("minilm", layer)


def test_llama_blocks_are_refused_clearly(tiny_models):
    with pytest.raises(ActclustError, match="hidden states alone"):
        following_blocks(tiny_models["llama"], "blocks.0.hook_out")


def test_deepcluster_trains_a_copy_and_finds_topics(minilm_topics):
    layer, store = "blocks.3.hook_out", minilm_topics
    blocks = following_blocks("minilm", layer)
    before = {k: v.clone() for k, v in blocks.state_dict().items()}
    model = DeepCluster(10, backbone=blocks, epochs=4, lr=1e-3, device="cpu",
                        random_state=0).fit(store.layer(layer))
    # the parameter is untouched (clone-safe); the fitted copy moved
    assert all(torch.equal(before[k], v) for k, v in blocks.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in model.module_.state_dict().items())
    assert model.transform(store.layer(layer)[:3]).shape == (3, 384)
    topic = store.labels("topic")
    shuffled = nmi(topic, np.random.default_rng(0).permutation(model.labels_))
    assert nmi(topic, model.labels_) > shuffled + 0.05
