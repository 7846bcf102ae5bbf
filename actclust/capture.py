"""Capture: run a target model over a dataset and write the hooked activations to a store.

The whole run is planned before the first forward pass: every document is tokenized once,
so the number of rows each document contributes, and therefore every shard's row range,
is known. That makes shards streamable (the ``.npy`` header goes first), resumable (a
killed run restarts at the first shard the manifest does not list) and identical to an
uninterrupted run.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import torch

from ._util.devices import resolve_device
from .data import as_dataset
from .data.base import Dataset
from .errors import ActclustError
from .models import Target, load_target
from .store import ActivationStore, StoreWriter
from .store.merge import PARTS_DIR
from .store.writer import check_store_target
from .store.format import STORAGE_DTYPES

POOLS = ("none", "mean", "last", "cls")
DEFAULT_SHARD_ROWS = 262_144


class _StopForward(Exception):
    """Raised from a hook once every requested layer has fired: later layers never run."""


@dataclass
class _Plan:
    """Tokenized documents and which of their positions become rows."""

    input_ids: list  # per doc: token ids (text) or None (arrays)
    keep: list  # per doc: bool array over positions, True where a row (or pool) reads
    rows_per_doc: np.ndarray
    truncated: int
    offsets: Optional[list] = None  # per doc: character span of each token (labelled data)


def capture(model, dataset, layers, pool: str = "none", out=None, batch_size: int = 32,
            device: str = "auto", dtype: str = "float32", max_length: Optional[int] = None,
            exclude_special: bool = False, limit: Optional[int] = None,
            shard_rows: int = DEFAULT_SHARD_ROWS, resume: bool = False,
            overwrite: bool = False, progress: bool = True, text_column: str = "text",
            labels=None, tokenizer=None, verify: bool = False,
            revision: Optional[str] = None, backend: str = "local",
            address: Optional[str] = None, workers: Optional[int] = None,
            checksum: str = "xxh3") -> ActivationStore:
    """Capture activations of ``layers`` of ``model`` over ``dataset`` into a store at ``out``.

    Args:
        model: ``"minilm"``, ``"digits-mlp"``, a Hugging Face hub id (``"gpt2"``, read
            from the local Hugging Face cache) or model directory, a ``TransformerBridge``, a ``PreTrainedModel`` or any ``torch.nn.Module``.
        dataset: a bundled name (``"topics"``), a JSONL/CSV/parquet path, a DataFrame, a
            list of strings, a Hugging Face ``datasets.Dataset``, or (for array-input
            modules) a numpy array / torch tensor with ``labels``.
        layers: hook names or globs (``"blocks.*.hook_resid_post"``), a list or a
            comma-separated string.
        pool: ``"none"`` stores one row per real token (padding dropped); ``"mean"``,
            ``"last"`` and ``"cls"`` store one row per document.
        out: the store directory to create.
        batch_size: documents per forward pass.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
        dtype: storage dtype, ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        max_length: truncate longer texts (default: the model's maximum); each truncation
            warns and the count is recorded in the manifest.
        exclude_special: drop special tokens ([CLS], [SEP], <bos>) from rows and pools.
        limit: capture only the first ``limit`` documents.
        shard_rows: rows per shard file; a layer of one shard reads back as one memory map.
        resume: finish an interrupted capture into ``out``.
        overwrite: replace an existing store at ``out``.
        progress: show a progress bar with rows/s.
        verify: with ``resume``, recompute the checksum of every finished shard before
            going on (headers and sizes are always checked); a damaged shard is captured
            again.
        revision: for a hub id, the branch, tag or commit (default ``main``); the
            manifest records the commit.
        backend: ``"local"`` (this process) or ``"ray"``: the documents are split into
            contiguous parts captured by Ray tasks, then merged into one store equal to a
            local capture row for row (``docs/scale.md``).
        address: with ``backend="ray"``, the Ray cluster to join (default: start a local
            one and shut it down at the end).
        workers: with ``backend="ray"``, how many parts to capture at once (default: the
            cluster's GPUs, else its CPUs).
        checksum: each shard's checksum, ``"xxh3"`` (xxh3_128: fast, catches damage) or
            ``"sha256"`` (cryptographic, readable by older actclust); a resumed store
            keeps the one it was started with (``docs/store-format.md``).

    Returns:
        The :class:`~actclust.ActivationStore` written to ``out``.

    Example:
        >>> import actclust, tempfile
        >>> store = actclust.capture("minilm", ["The cat sat.", "Stocks fell."],
        ...                          ["blocks.0.hook_out", "blocks.1.hook_out"],
        ...                          out=tempfile.mkdtemp() + "/s", progress=False)
        >>> store.rows[["doc_id", "token"]].head(3).values.tolist()
        [[0, '[CLS]'], [0, 'the'], [0, 'cat']]
    """
    if backend != "local" or address is not None or workers is not None:
        from .capture_parallel import capture_parallel

        return capture_parallel(
            model, dataset, layers, pool=pool, out=out, batch_size=batch_size, device=device,
            dtype=dtype, max_length=max_length, exclude_special=exclude_special, limit=limit,
            shard_rows=shard_rows, resume=resume, overwrite=overwrite, progress=progress,
            text_column=text_column, labels=labels, tokenizer=tokenizer, verify=verify,
            revision=revision, backend=backend, address=address, workers=workers,
            checksum=checksum)
    if out is not None and os.path.lexists(os.path.join(out, PARTS_DIR)):
        # A local run would start the store again from nothing: the parts' work is Ray's.
        raise ActclustError(f"{out} holds a capture in parts on Ray ({PARTS_DIR}); finish "
                            "it with --backend ray --resume, or start again with "
                            "--backend ray --overwrite")
    if pool not in POOLS:
        raise ActclustError(f"unknown pooling {pool!r}; choose one of {', '.join(POOLS)}")
    if dtype not in STORAGE_DTYPES:
        raise ActclustError(f"unknown storage dtype {dtype!r}; choose one of "
                            f"{', '.join(STORAGE_DTYPES)}")
    if out is None:  # an empty path is refused with the other paths, below
        raise ActclustError("no output directory: pass out=... (--out on the command line)")
    for name, value in {"batch_size": batch_size, "shard_rows": shard_rows, "limit": limit,
                        "max_length": max_length}.items():
        _check_count(name, value, optional=name in ("limit", "max_length"))
    check_store_target(out, resume, overwrite)  # a bad destination fails before the model loads
    device = resolve_device(device)
    ds = as_dataset(dataset, text_column=text_column, labels=labels)  # cheap checks first
    target = load_target(model, tokenizer=tokenizer, device=device, revision=revision)
    if limit is not None:
        ds = ds.head(limit)
    layer_names, plan, shards, header = _planned(target, ds, layers, pool, max_length, dtype,
                                                 exclude_special, shard_rows)
    writer = StoreWriter(out, header, shards, layer_names, ds.docs, dtype,
                         resume=resume, overwrite=overwrite, verify=verify, checksum=checksum)
    try:
        if not writer.complete:
            _run(target, ds, plan, writer, layer_names, pool, batch_size, dtype, progress,
                 device)
    finally:
        writer.close()  # releases the writer lock, whatever happened
    return ActivationStore(out)


def _planned(target: Target, ds: Dataset, layers, pool: str, max_length, dtype: str,
             exclude_special: bool, shard_rows: int) -> tuple:
    """Check what is asked of ``target`` and plan the whole capture: the layer names, the
    tokenized plan, the shard plan and the manifest header. A capture in parts on Ray plans
    the same way, so its parts add up to this plan."""
    if len(ds) == 0:
        raise ActclustError(f"dataset {ds.name!r} is empty: nothing to capture")
    _check_compatible(target, ds, pool)
    layer_names = target.resolve_layers(layers)
    if max_length is None:
        max_length = target.max_length
    elif target.max_length is not None and max_length > target.max_length:
        raise ActclustError(f"max_length {max_length} is more than {target.name} reads "
                            f"({target.max_length} tokens)")
    plan = _plan(target, ds, pool, max_length, exclude_special)
    shards = _shard_plan(plan.rows_per_doc, shard_rows)
    header = _header(target, ds, layer_names, pool, max_length, dtype, exclude_special,
                     shard_rows, plan.truncated)
    return layer_names, plan, shards, header


def _header(target: Target, ds: Dataset, layer_names: list, pool: str, max_length, dtype: str,
            exclude_special: bool, shard_rows: int, truncated: int) -> dict:
    """The manifest's provenance fields: what was captured, from what, and how."""
    return {
        "model": {"name": target.name, "kind": target.kind, "config_hash": target.config_hash,
                  **target.info},
        "dataset": {**ds.meta, "name": ds.name, "fingerprint": ds.fingerprint(),
                    "n_docs": len(ds)},
        "capture": {"layers": layer_names, "pool": pool, "max_length": max_length,
                    "storage_dtype": dtype, "exclude_special": exclude_special,
                    "shard_rows": shard_rows, "truncated_docs": truncated},
    }


def _check_count(name: str, value, optional: bool) -> None:
    """A count setting is a whole number of at least 1: 0 or a negative number is refused,
    never quietly replaced by a default."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ActclustError(f"{name} must be a whole number, got {value!r}")
    if value < 1:
        raise ActclustError(f"{name} must be at least 1, got {value}")


def _check_compatible(target: Target, ds: Dataset, pool: str) -> None:
    if target.is_text and not ds.is_text:
        raise ActclustError(f"{target.name} reads text, but dataset {ds.name!r} has no "
                            "text column")
    if not target.is_text:
        if ds.inputs is None:
            raise ActclustError(f"{target.name} takes array inputs, but dataset {ds.name!r} "
                                "is text; pass a numpy array or tensor of inputs")
        if pool != "none":
            raise ActclustError(f"pool={pool!r} applies to token sequences; {target.name} "
                                "takes array inputs: use pool='none'")


def _plan(target: Target, ds: Dataset, pool: str, max_length, exclude_special) -> _Plan:
    n = len(ds)
    if not target.is_text:
        return _Plan([None] * n, [None] * n, np.ones(n, np.int64), 0)
    tok = target.tokenizer
    texts = ds.docs["text"].tolist()
    want_offsets = ds.token_labeler is not None and pool == "none"
    if want_offsets and not getattr(tok, "is_fast", False):
        raise ActclustError(f"dataset {ds.name!r} labels tokens, which needs character "
                            f"offsets from a fast tokenizer; {target.name} has a slow one")
    fields = ["input_ids", "special_tokens_mask"] + (["offset_mapping"] if want_offsets else [])

    def encode(batch, truncate):
        enc = tok(batch, add_special_tokens=True, truncation=truncate, max_length=max_length,
                  return_special_tokens_mask=True, return_attention_mask=False,
                  return_offsets_mapping=want_offsets)
        return {f: list(enc[f]) for f in fields}

    # One pass without truncation; only the documents found too long are encoded again.
    enc = encode(texts, False)
    too_long = [i for i, ids in enumerate(enc["input_ids"])
                if max_length is not None and len(ids) > max_length]
    if too_long:
        cut = encode([texts[i] for i in too_long], True)
        longest = max(len(ids) for ids in cut["input_ids"])
        if longest > max_length:  # the special tokens alone are longer: nothing was cut
            raise ActclustError(f"max_length {max_length} is too small: {target.name} cannot "
                                f"cut a text below {longest} tokens (its special tokens "
                                "count)")
        for j, i in enumerate(too_long):
            for f in fields:
                enc[f][i] = cut[f][j]
    ids_all, keep_all, rows, truncated = [], [], np.zeros(n, np.int64), len(too_long)
    for i, (ids, special) in enumerate(zip(enc["input_ids"], enc["special_tokens_mask"])):
        keep = np.ones(len(ids), bool)
        if exclude_special:
            keep &= ~np.asarray(special, bool)
        if not keep.any() and pool != "none":
            raise ActclustError(f"document {i} of {ds.name!r} has no tokens left to pool "
                                f"(text {texts[i][:40]!r}); remove it or keep special tokens")
        ids_all.append(ids)
        keep_all.append(keep)
        rows[i] = int(keep.sum()) if pool == "none" else 1
    if truncated:
        warnings.warn(f"{truncated} of {n} documents are longer than {max_length} tokens "
                      "and were truncated (recorded in the manifest)", stacklevel=3)
    offsets = None
    if want_offsets:
        offsets = [[None if sp else tuple(span) for span, sp in zip(spans, special)]
                   for spans, special in zip(enc["offset_mapping"],
                                             enc["special_tokens_mask"])]
    return _Plan(ids_all, keep_all, rows, truncated, offsets)


def _shard_plan(rows_per_doc: np.ndarray, shard_rows: int) -> list:
    """Contiguous document ranges of at most ``shard_rows`` rows (one long doc may exceed)."""
    shards, start, count = [], 0, 0
    for i, r in enumerate(rows_per_doc.tolist()):
        if count and count + r > shard_rows:
            shards.append({"index": len(shards), "doc_start": start, "doc_stop": i,
                           "rows": count})
            start, count = i, 0
        count += r
    shards.append({"index": len(shards), "doc_start": start, "doc_stop": len(rows_per_doc),
                   "rows": count})
    return shards


@contextmanager
def _hooks(target: Target, names: list, sink: dict):
    """Forward hooks that copy each named activation into ``sink``; removed in ``finally``.

    Names that alias one tensor share one hook. The hook that completes the set raises
    :class:`_StopForward`, so nothing after the last requested layer is computed.
    """
    by_site: dict = {}
    for name in names:
        point = target.hook_points[name]
        by_site.setdefault((point.module_path, point.where), []).append(name)
    wanted = len(names)
    handles = []

    def make(site_names, where):
        def record(value):
            if isinstance(value, (tuple, list)):
                value = value[0]
            if site_names[0] in sink or not torch.is_tensor(value):
                return
            for name in site_names:
                sink[name] = value.detach()
            if len(sink) == wanted:
                raise _StopForward

        if where == "input":
            def pre_hook(module, args, kwargs):
                record(args[0] if args else next(
                    (v for v in kwargs.values() if torch.is_tensor(v)), None))
            return pre_hook
        return lambda module, args, output: record(output)

    try:
        for (path, where), site_names in by_site.items():
            module = target.module_for(target.hook_points[site_names[0]])
            fn = make(site_names, where)
            if where == "input":
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _forward(target: Target, batch: dict, names: list) -> dict:
    sink: dict = {}
    with _hooks(target, names, sink), torch.inference_mode():
        try:
            if target.kind == "bridge":
                target.module(batch["input_ids"], attention_mask=batch["attention_mask"],
                              return_type=None)
            elif target.kind == "hf":
                target.module(**batch)
            else:
                target.module(batch["inputs"])
        except _StopForward:
            pass
    missing = [n for n in names if n not in sink]
    if missing:
        raise ActclustError(f"hook points {', '.join(missing)} of {target.name} never ran in "
                            "the forward pass, so they cannot be captured; pick others")
    return sink


def _collate(target: Target, plan: _Plan, ds: Dataset, lo: int, hi: int, device: str):
    """Model inputs for documents ``lo:hi`` and the positions rows are read from."""
    if not target.is_text:
        return {"inputs": torch.as_tensor(ds.inputs[lo:hi], dtype=torch.float32,
                                          device=device)}, None
    tok = target.tokenizer
    ids = plan.input_ids[lo:hi]
    length = max(len(x) for x in ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    left = getattr(tok, "padding_side", "right") == "left"
    input_ids = np.full((len(ids), length), pad, np.int64)
    mask = np.zeros((len(ids), length), np.int64)
    keep = np.zeros((len(ids), length), bool)
    for j, (x, k) in enumerate(zip(ids, plan.keep[lo:hi])):
        sl = slice(length - len(x), length) if left else slice(0, len(x))
        input_ids[j, sl], mask[j, sl], keep[j, sl] = x, 1, k
    batch = {"input_ids": torch.from_numpy(input_ids).to(device),
             # the mask is always passed: without it, padding changes real tokens' values
             "attention_mask": torch.from_numpy(mask).to(device)}
    if target.kind == "hf" and "token_type_ids" in getattr(tok, "model_input_names", []):
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    return batch, torch.from_numpy(keep).to(device)


def _reduce(name: str, value: torch.Tensor, keep, pool: str, n_docs: int,
            dtype: str) -> np.ndarray:
    """Hooked tensor -> rows: drop padding or pool, flatten per-row dims, cast, to numpy."""
    if value.shape[0] != n_docs:
        raise ActclustError(f"hook {name!r} gives a tensor of shape {tuple(value.shape)}, "
                            f"with no batch axis of {n_docs}; it cannot be stored as rows")
    if keep is None:
        rows = value.reshape(n_docs, -1)
    else:
        if value.ndim < 3 or value.shape[1] != keep.shape[1]:
            raise ActclustError(
                f"hook {name!r} gives a tensor of shape {tuple(value.shape)}, not "
                f"(batch, position, ...): it has no token axis to store rows from "
                "(attention patterns, for instance); choose a residual, attention or MLP "
                "output hook")
        value = value.reshape(*value.shape[:2], -1)
        if pool == "none":
            rows = value[keep]
        elif pool == "mean":
            weights = keep.to(value.dtype).unsqueeze(-1)
            rows = (value * weights).sum(1) / weights.sum(1)
        else:
            positions = torch.arange(keep.shape[1], device=keep.device).expand_as(keep)
            masked = torch.where(keep, positions, -1 if pool == "last" else keep.shape[1])
            index = masked.max(1).values if pool == "last" else masked.min(1).values
            rows = value[torch.arange(n_docs, device=value.device), index]
    if dtype == "bfloat16":
        return rows.to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)
    return rows.to(getattr(torch, dtype)).cpu().numpy()


def _row_table(target: Target, plan: _Plan, ds: Dataset, pool: str, lo: int,
               hi: int) -> pd.DataFrame:
    """The ``rows.parquet`` entries of documents ``lo:hi`` (token text, labels)."""
    doc_ids = ds.docs["doc_id"].to_numpy()
    if pool != "none" or not target.is_text:
        return pd.DataFrame({"doc_id": doc_ids[lo:hi]})
    tok = target.tokenizer
    cols: dict = {"doc_id": [], "position": [], "token_id": [], "token": []}
    labeler = ds.token_labeler
    texts = ds.docs["text"]
    for i in range(lo, hi):
        ids = np.asarray(plan.input_ids[i])
        positions = np.nonzero(plan.keep[i])[0]
        kept_ids = ids[positions].tolist()
        cols["doc_id"].extend([doc_ids[i]] * len(positions))
        cols["position"].extend(positions.tolist())
        cols["token_id"].extend(kept_ids)
        cols["token"].extend(tok.convert_ids_to_tokens(kept_ids))
        if labeler is not None:
            offsets = [plan.offsets[i][p] for p in positions]
            for col, values in labeler(i, texts.iloc[i], offsets, positions.tolist()).items():
                cols.setdefault(col, []).extend(values)
    table = pd.DataFrame(cols)
    return table.astype({"doc_id": np.int64, "position": np.int32, "token_id": np.int64})


def _run(target, ds, plan, writer, names, pool, batch_size, dtype, show, device) -> None:
    from ._progress import tqdm

    pending = writer.pending_shards()
    done_rows = int(sum(s["rows"] for s in writer.plan) - sum(s["rows"] for s in pending))
    bar = tqdm(total=int(sum(s["rows"] for s in writer.plan)), initial=done_rows,
               unit="row", unit_scale=True, disable=not show, desc=f"capture {target.name}")
    # One writer thread: disk writes of batch i overlap the forward pass of batch i+1.
    inflight: deque = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="actclust-writer") as pool_:
        try:
            for shard in pending:
                pool_.submit(writer.begin_shard, shard).result()
                for lo in range(shard["doc_start"], shard["doc_stop"], batch_size):
                    hi = min(lo + batch_size, shard["doc_stop"])
                    batch, keep = _collate(target, plan, ds, lo, hi, device)
                    acts = _forward(target, batch, names)
                    arrays = {n: _reduce(n, acts[n], keep, pool, hi - lo, dtype)
                              for n in names}
                    rows = _row_table(target, plan, ds, pool, lo, hi)
                    inflight.append(pool_.submit(writer.append, arrays, rows))
                    while len(inflight) > 2:
                        inflight.popleft().result()
                    bar.update(len(rows))
                while inflight:
                    inflight.popleft().result()
                pool_.submit(writer.commit_shard).result()
            writer.finalize()
        except BaseException as err:
            for future in inflight:
                future.cancel()
            pool_.shutdown(wait=True)
            writer.abort_shard()
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                raise ActclustError(f"disk full while writing {writer.root}; no partial shard "
                                    "was left. Free space, then rerun with --resume") from None
            if isinstance(err, OSError):
                raise ActclustError(f"cannot write store {writer.root}: {err}; fix it, then "
                                    "rerun with --resume") from None
            raise
        finally:
            bar.close()
