"""Backbones for trained reporters: a plain MLP, or the studied model's own later blocks.

A reporter trained on block ``l``'s activations through blocks ``l+1..`` of the same
network, initialised from its weights, inherits that network's inductive bias instead of
an MLP's.
"""

from __future__ import annotations

import copy
import re

from ..errors import ActclustError

# A hook at a block's output continues with the next block; one at its input, with itself.
_AFTER = re.compile(r"^blocks\.(\d+)\.(hook_out|hook_resid_post)$")
_BEFORE = re.compile(r"^blocks\.(\d+)\.(hook_in|hook_resid_pre)$")


def mlp(d_in: int, widths: tuple):
    """Linear + BatchNorm + ReLU layers from ``d_in`` through each of ``widths`` (none:
    the identity).

    Example:
        >>> net = mlp(8, (16, 4))
        >>> len(net), net[3]
        (6, Linear(in_features=16, out_features=4, bias=True))
    """
    from torch import nn

    layers, width = [], d_in
    for h in widths:
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers)


def _following_blocks_module():
    from torch import nn

    class FollowingBlocks(nn.Module):
        """Transformer blocks applied to activation vectors, each as a one-token sequence.

        A pooled vector (or one token's) has no context left to attend to, so each block
        sees a sequence of length one: attention reduces to its value and output
        projections, while the layer norms and MLPs act as in the model.
        """

        def __init__(self, blocks, first: int):
            super().__init__()
            self.blocks = nn.ModuleList(copy.deepcopy(b) for b in blocks)
            self.first = first

        def forward(self, x):
            hidden = x[:, None, :]
            for block in self.blocks:
                out = block(hidden)
                hidden = out[0] if isinstance(out, tuple) else out
            return hidden[:, 0]

        def extra_repr(self) -> str:
            return f"blocks {self.first}..{self.first + len(self.blocks) - 1} of the model"

    return FollowingBlocks


def following_blocks(model, layer: str, n_blocks: int | None = None):
    """The blocks that follow ``layer`` in ``model``, copied with their weights, as a module
    mapping activation vectors of that layer to vectors of the model's width.

    Pass it as ``DeepCluster(backbone=...)``; training changes the copy, never ``model``.

    Args:
        model: anything :func:`actclust.models.load_target` takes (``"minilm"``, a Hugging
            Face path or model).
        layer: the captured layer, ``blocks.N.hook_out`` / ``blocks.N.hook_resid_post``
            (continue at block N+1) or ``blocks.N.hook_in`` / ``blocks.N.hook_resid_pre``
            (continue at block N).
        n_blocks: how many blocks to keep (default: all that follow).

    Models whose blocks run on hidden states alone work (BERT, GPT-2); blocks that need
    position embeddings passed in (Llama's rotary ones) are refused with an error.

    Example:
        >>> import torch
        >>> blocks = following_blocks("minilm", "blocks.3.hook_out")
        >>> blocks
        FollowingBlocks(
          blocks 4..5 of the model
          (blocks): ModuleList(...)
        )
        >>> blocks(torch.randn(2, 384)).shape
        torch.Size([2, 384])
    """
    from ..models import load_target

    target = load_target(model)
    if target.kind != "hf":
        raise ActclustError("following_blocks needs a Hugging Face transformer (\"minilm\", "
                            f"a model path or a PreTrainedModel); got a {target.kind} target")
    after, before = _AFTER.match(layer), _BEFORE.match(layer)
    if not (after or before):
        raise ActclustError(
            f"following_blocks continues from a block boundary; {layer!r} is not one. Use "
            "blocks.N.hook_out / hook_resid_post (the output of block N) or "
            "blocks.N.hook_in / hook_resid_pre (its input)")
    first = int(after.group(1)) + 1 if after else int(before.group(1))
    modules = dict(target.module.named_modules())
    paths = []
    index = first
    while f"blocks.{index}.hook_out" in target.hook_points:
        paths.append(target.hook_points[f"blocks.{index}.hook_out"].module_path)
        index += 1
    if not paths:
        raise ActclustError(f"{layer!r} is the model's last block: no block follows it. "
                            "Choose an earlier layer, or the MLP backbone")
    if n_blocks is not None:
        if n_blocks < 1:
            raise ActclustError(f"n_blocks must be at least 1, not {n_blocks}")
        paths = paths[:n_blocks]
    module = _following_blocks_module()([modules[p] for p in paths], first).float()
    import torch

    try:
        with torch.no_grad():
            module.eval()(torch.zeros(2, _width(target.module)))
    except TypeError as err:  # e.g. rotary embeddings passed in by the parent model
        raise ActclustError(f"the blocks of {type(target.module).__name__} cannot run on "
                            f"hidden states alone ({err}); use the MLP backbone") from None
    return module.train()


def _width(module) -> int:
    config = getattr(module, "config", None)
    for key in ("hidden_size", "n_embd", "d_model"):
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise ActclustError(f"cannot tell the hidden width of {type(module).__name__}")
