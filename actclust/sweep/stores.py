"""The stores of a sweep: where each model's store lies, whether an existing store already
holds the capture the sweep asks for, and capturing (or resuming a capture) when not.

A sweep over one model captures into ``<out>/store``, over several into
``<out>/stores/<model>``, or uses (and fills) the store named by ``data.store``. A store in
the sweep's own folder that holds a different capture is captured again; a store given by
the user never is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ActclustError
from .spec import SweepSpec


@dataclass
class StorePlan:
    """One model's store: where it lies and, when it may need capturing, what to capture."""

    model: str  # the model as the table names it
    path: Path
    owned: bool  # inside the sweep's folder: may be recaptured
    layers: list
    target: object = None  # a loaded target when a capture may be needed
    dataset: object = None
    capture: Optional[dict] = None
    fits: bool = True
    store: object = None  # the open store, once it exists
    capture_layers: Optional[list] = None  # an interrupted capture's layers, to resume it


def known_labels(plan: StorePlan) -> Optional[list]:
    """The label columns the sweep will have, when they are known before capturing."""
    if plan.store is not None:
        return plan.store.label_columns
    if plan.dataset is not None and plan.dataset.token_labeler is None:
        return plan.dataset.label_columns
    return None


def check_labels(store, labels) -> None:
    """Every label the sweep scores against must be a column of the store."""
    missing = [label for label in labels if label not in store.label_columns]
    if missing:
        raise ActclustError(f"label column {missing[0]!r} is not in store {store.root}; "
                            f"label columns: {', '.join(store.label_columns) or 'none'}")


def _slug(model: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model).name or model).strip("-.") or "model"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}-{i}", i + 1
    taken.add(slug)
    return slug


def plan_store(spec: SweepSpec, model: str, out: Path) -> StorePlan:
    """Where ``model``'s store goes and whether a store already there fits; checks the
    dataset's labels and the layers (before any capture)."""
    from .._util.devices import resolve_device
    from ..data import as_dataset
    from ..models import load_target

    cap = spec.capture
    ds = as_dataset(spec.dataset, text_column=cap.get("text_column", "text"))
    if cap.get("limit"):
        ds = ds.head(cap["limit"])
    target = load_target(spec.model_paths.get(model, model),
                         device=resolve_device(cap.get("device", "auto")))
    layers = target.resolve_layers(spec.layers)
    if spec.labels and ds.token_labeler is None:
        missing = [label for label in spec.labels if label not in ds.label_columns]
        if missing:
            raise ActclustError(f"label column {missing[0]!r} is not in dataset {ds.name!r}; "
                                f"its label columns: {', '.join(ds.label_columns) or 'none'}")
    if spec.store is not None:
        path, owned = spec.store.resolve(), False
    elif len(spec.models) == 1:
        path, owned = out / "store", True
    else:
        taken = set()
        slugs = {m: _slug(m, taken) for m in spec.models}
        path, owned = out / "stores" / slugs[model], True
    settings = {"pool": cap.get("pool", "none"), "dtype": cap.get("dtype", "float32"),
                "max_length": cap.get("max_length"),
                "exclude_special": cap.get("exclude_special", False),
                "batch_size": cap.get("batch_size", 32), "device": cap.get("device", "auto")}
    plan = StorePlan(model, path, owned, layers, target, ds, settings)
    plan.fits, reason, plan.capture_layers = store_fits(path, target, ds, settings, layers)
    if not plan.fits and reason and not owned and (path / "manifest.json").exists():
        raise ActclustError(f"store {path} holds a different capture ({reason}); remove "
                            "data.store to capture into the sweep's folder, or point it "
                            "elsewhere")
    return plan


def store_fits(path: Path, target, ds, settings: dict, layers: list):
    """Whether the store at ``path`` already holds this capture, and if not, why (no
    reason: capture into it). An interrupted capture of the same settings is resumed with
    its own layers, returned third."""
    from ..store.format import read_manifest

    if not (path / "manifest.json").exists():
        return False, "", None
    m = read_manifest(path)
    cap = m["capture"]
    checks = [
        ("model", m["model"].get("name"), target.name),
        ("model weights", m["model"].get("config_hash"), target.config_hash),
        ("documents", m["dataset"].get("fingerprint"), ds.fingerprint()),
        ("pool", cap.get("pool"), settings["pool"]),
        ("dtype", cap.get("storage_dtype"), settings["dtype"]),
        ("max_length", cap.get("max_length"), settings["max_length"] or target.max_length),
        ("exclude_special", cap.get("exclude_special"), settings["exclude_special"]),
    ]
    for what, then, now in checks:
        if then != now:
            reason = f"{what}: {str(then)[:16]!r} in the store, {str(now)[:16]!r} asked"
            return False, reason, None
    stored = list(cap.get("layers") or m["layers"])
    lacking = [layer for layer in layers if layer not in stored]
    if lacking:
        return False, f"layer {lacking[0]!r} is not in it", None
    if not m.get("complete"):
        return False, "", stored  # interrupted: finish it
    return True, "", None


def plan_given_store(spec: SweepSpec) -> StorePlan:
    """The store named by ``data.store`` when no model is given: used as it is."""
    from .._util.names import select_names
    from ..store import ActivationStore

    store = ActivationStore(spec.store.resolve())

    def missing(pattern):
        raise ActclustError(f"layer {pattern!r} is not in store {store.root}; it holds "
                            f"{', '.join(store.layers)}")

    layers = store.layers if spec.layers is None else \
        select_names(spec.layers, store.layers, missing)
    return StorePlan(store.model_name, store.root, False, layers, store=store)


def ensure_store(plan: StorePlan, progress: bool):
    """The plan's store, open: as it is when it fits, else captured (an interrupted capture
    is resumed; a different one in the sweep's own folder is captured again)."""
    from ..capture import capture
    from ..store import ActivationStore

    if plan.store is not None:
        return plan.store
    if plan.fits:
        return ActivationStore(plan.path)
    kwargs = dict(pool=plan.capture["pool"], dtype=plan.capture["dtype"],
                  max_length=plan.capture["max_length"],
                  exclude_special=plan.capture["exclude_special"],
                  batch_size=plan.capture["batch_size"], device=plan.capture["device"],
                  progress=progress)
    complete = (plan.path / "manifest.json").exists() and \
        ActivationStore(plan.path, allow_incomplete=True).complete
    if plan.owned and complete:  # a different capture in the sweep's own folder: redo it
        return capture(plan.target, plan.dataset, plan.layers, out=plan.path,
                       overwrite=True, **kwargs)
    try:
        return capture(plan.target, plan.dataset, plan.capture_layers or plan.layers,
                       out=plan.path, resume=True, **kwargs)
    except ActclustError:
        if not plan.owned:
            raise
        return capture(plan.target, plan.dataset, plan.layers, out=plan.path,
                       overwrite=True, **kwargs)

