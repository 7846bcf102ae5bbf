"""A TransformerLens ``ActivationCache`` (from ``run_with_cache``) as a store.

Each cached tensor of shape ``(batch, position, ...)`` is a layer under its TransformerLens
hook name; every (document, position) of ``tokens`` is a row, with its token id and, given
a tokenizer, its token text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np
import pandas as pd

from .._util.names import select_names
from ..errors import ActclustError, closest
from .importing import DEFAULT_SHARD_ROWS, from_arrays
from .reader import ActivationStore

__all__ = ["from_activation_cache"]

# (batch, head, query, key): per pair of positions, not per token; never a row per token.
_PAIRWISE = ("hook_pattern", "hook_attn_scores")


def _entries(cache) -> dict:
    """Hook name -> tensor of an ``ActivationCache`` or a plain mapping."""
    inner = getattr(cache, "cache_dict", None)
    if isinstance(inner, Mapping):
        return dict(inner)
    if isinstance(cache, Mapping):
        return dict(cache)
    raise ActclustError(f"expected a TransformerLens ActivationCache or a dict of hook name "
                        f"-> tensor, got {type(cache).__name__}")


def _identity(value) -> tuple:
    """What makes two cache entries one tensor: the same memory, shape and strides."""
    if type(value).__module__.startswith("torch"):
        return (value.data_ptr(), tuple(value.shape), tuple(value.stride()), str(value.dtype))
    array = np.asarray(value)
    return (array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str)


def _once(names: list, entries: dict) -> list:
    """``names`` with each tensor once. A TransformerBridge caches one tensor under several
    names (``blocks.0.hook_out`` is ``blocks.0.hook_resid_post``); the TransformerLens name
    is kept, not the bridge's generic ``hook_in``/``hook_out``.

    Example:
        >>> import torch
        >>> t = torch.ones(1, 2, 3)
        >>> _once(["blocks.0.hook_out", "blocks.0.hook_resid_post", "x"],
        ...       {"blocks.0.hook_out": t, "blocks.0.hook_resid_post": t, "x": t + 1})
        ['blocks.0.hook_resid_post', 'x']
    """
    groups: dict = {}
    for name in names:
        groups.setdefault(_identity(entries[name]), []).append(name)
    keep = set()
    for group in groups.values():
        named = [n for n in group if n.rsplit(".", 1)[-1] not in ("hook_in", "hook_out")]
        keep.add((named or group)[0])
    return [n for n in names if n in keep]


def _as_tokens(tokens) -> np.ndarray:
    if type(tokens).__module__.startswith("torch"):
        tokens = tokens.detach().cpu().numpy()
    tokens = np.asarray(tokens)
    if tokens.dtype.kind not in "iu":
        raise ActclustError(f"tokens must be integer token ids of shape (batch, position), "
                            f"got {tokens.dtype} values")
    if tokens.ndim == 1:  # one sequence, as run_with_cache(..., remove_batch_dim=True) keeps
        tokens = tokens[None]
    if tokens.ndim != 2:
        raise ActclustError(f"tokens must have shape (batch, position), got "
                            f"{list(tokens.shape)}")
    return tokens


def _tokenizer_of(tokenizer, model):
    for candidate in (tokenizer, model):
        if candidate is None or isinstance(candidate, str):
            continue
        if hasattr(candidate, "convert_ids_to_tokens"):
            return candidate
        inner = getattr(candidate, "tokenizer", None)
        if inner is not None and hasattr(inner, "convert_ids_to_tokens"):
            return inner
    return None


def _per_document(values, n: int, what: str) -> pd.DataFrame:
    frame = pd.DataFrame(values) if values is not None else pd.DataFrame(index=range(n))
    if len(frame) != n:
        raise ActclustError(f"{what} has {len(frame)} entries, tokens {n} sequences: give one "
                            "per sequence")
    return frame.reset_index(drop=True)


def from_activation_cache(cache, tokens, out, *, names=None, tokenizer=None, texts=None,
                          labels=None, model=None, dataset: Optional[str] = None,
                          dtype: str = "float32", shard_rows: int = DEFAULT_SHARD_ROWS,
                          overwrite: bool = False, progress: bool = True) -> ActivationStore:
    """Write the activations of a TransformerLens ``run_with_cache`` as a store at ``out``.

    Args:
        cache: the ``ActivationCache``, or a dict of hook name -> tensor of shape
            ``(batch, position, ...)``.
        tokens: the token ids the cache was computed on, ``(batch, position)``.
        out: the store directory to create.
        names: hook names or globs to keep (``"blocks.*.hook_resid_post"``). Default:
            every tensor of shape ``(batch, position, ...)`` except attention patterns
            and scores, each once (names that alias one tensor, as a TransformerBridge's
            ``blocks.0.hook_out`` and ``blocks.0.hook_resid_post`` do, keep the
            TransformerLens one). Layers keep their TransformerLens names.
        tokenizer: a tokenizer (or a model with ``.tokenizer``) to store each token's text.
        texts: one text per sequence, stored as the documents' ``text``.
        labels: document labels: a DataFrame or a dict of column -> one value per sequence.
        model: the model (its ``cfg.model_name`` and tokenizer are used) or its name.
        dataset: the dataset's name, recorded in the manifest.
        dtype: storage dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        shard_rows: rows per shard file.
        overwrite: replace an existing store at ``out``.
        progress: show a progress bar.

    Rows are one per (sequence, position): ``doc_id`` is the sequence's index in the batch,
    with ``position``, ``token_id`` and, given a tokenizer, ``token``. Padding positions
    are kept (drop them from the rows you analyse with the ``token`` or ``token_id``).

    Example:
        >>> import tempfile, torch
        >>> cache = {"blocks.0.hook_resid_post": torch.ones(2, 3, 4)}
        >>> store = from_activation_cache(cache, torch.zeros(2, 3, dtype=torch.long),
        ...                               tempfile.mkdtemp() + "/s", progress=False)
        >>> store.layers, store.layer("blocks.0.hook_resid_post").shape
        (['blocks.0.hook_resid_post'], (6, 4))
    """
    entries = _entries(cache)
    ids = _as_tokens(tokens)
    batch, positions = ids.shape
    if getattr(cache, "has_batch_dim", True) is False:  # remove_batch_dim=True
        if batch != 1:
            raise ActclustError(f"the cache has no batch dimension but tokens hold {batch} "
                                "sequences; pass the one sequence it was computed on")
        entries = {k: v[None] for k, v in entries.items()}

    def fits(name, value):
        return len(getattr(value, "shape", ())) >= 3 and \
            tuple(value.shape[:2]) == (batch, positions)

    if names is None:
        chosen = _once([k for k, v in entries.items()
                        if fits(k, v) and not k.endswith(_PAIRWISE)], entries)
        if not chosen:
            raise ActclustError(f"no tensor in the cache has shape (batch, position, ...) = "
                                f"({batch}, {positions}, ...) as tokens do; pass the tokens "
                                "the cache was computed on")
    else:
        def missing(pattern):
            raise ActclustError(f"no hook in the cache matches {pattern!r} "
                                f"({closest(pattern, entries)})" if pattern else
                                "names is empty: name one or more hooks")

        chosen = select_names(names, list(entries), missing)
        for name in chosen:
            if not fits(name, entries[name]):
                raise ActclustError(
                    f"hook {name!r} holds a tensor of shape {list(entries[name].shape)}, not "
                    f"(batch, position, ...) = ({batch}, {positions}, ...): it has no row per "
                    "token (attention patterns, for instance); choose other hooks")
    rows = pd.DataFrame({
        "doc_id": np.repeat(np.arange(batch, dtype=np.int64), positions),
        "position": np.tile(np.arange(positions, dtype=np.int32), batch),
        "token_id": ids.reshape(-1).astype(np.int64)})
    tok = _tokenizer_of(tokenizer, model)
    if tok is not None:
        rows["token"] = tok.convert_ids_to_tokens(rows["token_id"].tolist())
    docs = _per_document(labels, batch, "labels")
    taken = [c for c in ("doc_id", "text" if texts is not None else None) if c in docs.columns]
    if taken:
        raise ActclustError(f"labels has a {taken[0]!r} column; actclust sets it (texts= "
                            "gives the text): rename that label")
    if texts is not None:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if len(texts) != batch:
            raise ActclustError(f"texts has {len(texts)} entries, tokens {batch} sequences: "
                                "give one text per sequence")
        docs.insert(0, "text", texts)
    docs.insert(0, "doc_id", np.arange(batch, dtype=np.int64))
    return from_arrays(out, {name: entries[name] for name in chosen}, rows, docs,
                       dtype=dtype, shard_rows=shard_rows, overwrite=overwrite, model=model,
                       dataset=dataset or "activation cache",
                       source="TransformerLens ActivationCache"
                       if getattr(cache, "cache_dict", None) is not None else "dict of tensors",
                       progress=progress)
