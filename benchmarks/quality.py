"""Cluster quality of every reporter next to k-means, on the bundled data, with the
label-free scores beside the labelled ones: regenerates ``docs/results.md``.

Inputs (the number of clusters is the number of classes):

- ``digits``: ``load_digits`` pixels, 1,797 x 64, 10 digit classes;
- ``digits-mlp``: the bundled ``digits-mlp`` network's ``relu2`` activations on the same
  images (1,797 x 64);
- ``minilm-N``: MiniLM, ``blocks.N.hook_out`` mean-pooled over each sentence of the bundled
  ``topics`` set (3,200 x 384), scored against its 10 topics (and the sentence template);
- ``tokens-3``: MiniLM ``blocks.3.hook_out`` for every token of the first 400 ``tokens``
  sentences (5,483 x 384), scored against the part of speech (12 classes, with the
  special tokens) and the token kind.

Each reporter (``--methods``; default all: KMeans with ``n_init=10``, Agglomerative
(Ward), DEC, IDEC, IIC, DeepCluster, SCAN, TEMI, TURTLE, TURTLE-8h (eight heads on
batches of 512), IMSAT, DAC, Local Aggregation, and TURTLE on MiniLM blocks 3 and 5
together) is fitted with its defaults and ``random_state`` 0..seeds-1; cluster
accuracy (Hungarian), NMI and ARI are reported as mean ± sd over seeds with the wall time
of each fit, the mean share of the largest cluster, and the label-free
``self_probe_accuracy`` of the clusters (no labels: the score settings are chosen by).
Each input's kNN label purity (k = 20, cosine) says whether neighbour pairs carry the
label. The label-free choice (highest mean self-probe accuracy) is set against the
labelled best (highest mean NMI). CCS is scored on the ``truth`` contrast pairs
(last-token pooled) against a linear probe on the same pairs.

Every finished fit is cached (``--cache``), so an interrupted run resumes; ``--fresh``
starts over. Last line: ``kmeans_nmi=<mean over inputs> best_frozen_nmi=<best of SCAN,
TEMI, TURTLE (either setting), mean over inputs> ratio=<frozen / kmeans>``.

    python benchmarks/quality.py [--seeds 5] [--inputs digits,digits-mlp,minilm-3,...]
        [--methods KMeans,SCAN,...] [--out docs/results.md]

docs/results.md was last written with ``--methods KMeans,Agglomerative,IIC,DeepCluster,
SCAN,TEMI,TURTLE,TURTLE-8h,IMSAT,DAC,LocalAggregation,TURTLE-3+5`` (DEC and IDEC take one
to two minutes a fit; the reading quotes their last figures).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import actclust
from actclust.label_free import knn_purity, self_probe_accuracy
from actclust.metrics import cluster_scores
from actclust import reporters as R
from actclust.reporters import CCS
from actclust.reporters.backbones import following_blocks
from actclust.reporters.ccs import contrast_pairs

METHODS = {
    "KMeans": lambda k, seed, layer: R.KMeans(k, n_init=10, random_state=seed),
    "DEC": lambda k, seed, layer: R.DEC(k, random_state=seed),
    "IDEC": lambda k, seed, layer: R.IDEC(k, random_state=seed),
    "IIC": lambda k, seed, layer: R.IIC(k, random_state=seed),
    # pairs from k-means consensus cells (few share a sentence template) and linear heads
    "IIC-kmpairs": lambda k, seed, layer: R.IIC(k, pairing="kmeans", hidden=(),
                                                random_state=seed),
    "DeepCluster": lambda k, seed, layer: R.DeepCluster(k, random_state=seed),
    # the model's own following blocks as backbone; only where a block follows the layer
    "DeepCluster-blocks": lambda k, seed, layer: R.DeepCluster(
        k, backbone=following_blocks("minilm", layer), lr=BLOCKS_LR, random_state=seed),
    "Agglomerative": lambda k, seed, layer: R.Agglomerative(k),
    "SCAN": lambda k, seed, layer: R.SCAN(k, random_state=seed),
    "TEMI": lambda k, seed, layer: R.TEMI(k, random_state=seed),
    "TURTLE": lambda k, seed, layer: R.TURTLE(k, random_state=seed),
    # eight restarts in one batched fit on batches of 512 rows, the lowest-loss one kept
    "TURTLE-8h": lambda k, seed, layer: R.TURTLE(k, n_heads=8, batch_size=512,
                                                 random_state=seed),
    "DAC": lambda k, seed, layer: R.DAC(k, random_state=seed),
    "IMSAT": lambda k, seed, layer: R.IMSAT(k, random_state=seed),
    "LocalAggregation": lambda k, seed, layer: R.LocalAggregation(k, random_state=seed),
    # the layers of one model as TURTLE's representation spaces: blocks 3 and 5 together
    "TURTLE-3+5": lambda k, seed, layer: R.TURTLE(k, random_state=seed),
}
FROZEN = ("SCAN", "TEMI", "TURTLE", "TURTLE-8h", "TURTLE-3+5")  # built for frozen features (issue text)
BLOCKS_LR = 1e-2
MINILM_LAYERS = (3, 5)  # a middle block and the last
DEFAULT_INPUTS = ["digits", "digits-mlp", *(f"minilm-{n}" for n in MINILM_LAYERS), "tokens-3"]
TOKENS_DOCS = 400
DESCRIPTIONS = {
    "digits": "load_digits pixels (1,797 x 64), 10 digit classes",
    "digits-mlp": "digits-mlp `relu2` activations (1,797 x 64), 10 digit classes",
    **{f"minilm-{n}": f"MiniLM `blocks.{n}.hook_out`, mean-pooled, bundled `topics` "
       "(3,200 x 384), 10 topics" for n in range(6)},
    "tokens-3": f"MiniLM `blocks.3.hook_out`, every token of the first {TOKENS_DOCS} bundled "
                "`tokens` sentences (5,483 x 384), 12 parts of speech (special tokens included)",
}


def load_input(name: str, cache: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Rows, class labels and other labels to score against (MiniLM: the sentence template)
    of one input, capturing once (cached) where a model is needed."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data.astype(np.float32), digits.target, {}
    if name == "digits-mlp":
        store = _store(cache / "digits-mlp", "digits-mlp", "digits", ["relu2"], "none")
        return store.layer("relu2").to_numpy(), store.labels("digit"), {}
    if name.startswith("minilm-"):
        layers = [f"blocks.{n}.hook_out" for n in MINILM_LAYERS]
        layer = f"blocks.{name.split('-')[1]}.hook_out"
        if layer not in layers:
            layers.append(layer)
        store = _store(cache / "minilm-topics", "minilm", "topics", layers, "mean")
        return (np.asarray(store.layer(layer).to_numpy()), store.labels("topic"),
                {"template": store.labels("template")})
    if name == "tokens-3":
        store = _store(cache / "minilm-tokens", "minilm", "tokens", ["blocks.3.hook_out"],
                       "none", limit=TOKENS_DOCS)
        return (np.asarray(store.layer("blocks.3.hook_out").to_numpy()),
                store.labels("pos").astype(str),
                {"token_kind": store.labels("token_kind").astype(str)})
    raise SystemExit(f"unknown input {name!r}; choose from digits, digits-mlp, minilm-0..5, "
                     "tokens-3")


def method_input(method: str, name: str, X, cache: Path):
    """What ``method`` is fitted on: the input's rows, or for TURTLE-3+5 blocks 3 and 5."""
    if method != "TURTLE-3+5":
        return X
    store = _store(cache / "minilm-topics", "minilm", "topics",
                   [f"blocks.{n}.hook_out" for n in MINILM_LAYERS], "mean")
    return [np.asarray(store.layer(f"blocks.{n}.hook_out").to_numpy()) for n in MINILM_LAYERS]


def applies(method: str, name: str) -> bool:
    layer = name.split("-")[1] if name.startswith("minilm-") else None
    if method == "DeepCluster-blocks":  # needs a following block
        return layer is not None and layer != "5"
    if method == "TURTLE-3+5":  # one fit, scored with the block 5 input's topics
        return name == "minilm-5"
    return True


# The bundled dataset each captured input comes from, how many of its documents, and the
# cached store it is captured into.
INPUT_DATASETS = {"digits-mlp": ("digits", None, "digits-mlp"),
                  "tokens-3": ("tokens", TOKENS_DOCS, "minilm-tokens"),
                  **{f"minilm-{n}": ("topics", None, "minilm-topics") for n in range(6)}}


def dataset_fingerprint(dataset: str, limit=None) -> str:
    from actclust.data import as_dataset

    ds = as_dataset(dataset)
    return (ds.head(limit) if limit else ds).fingerprint()


def drop_stale_cells(name: str, cells: Path) -> None:
    """Forget an input's cached cells when its dataset's generator has changed since they
    were computed (known from a mark beside them, else from the cached store's manifest)."""
    if name not in INPUT_DATASETS:
        return
    dataset, limit, folder = INPUT_DATASETS[name]
    now = dataset_fingerprint(dataset, limit)
    mark, store = cells / f"{name}._data.json", cells.parent / folder / "manifest.json"
    before = json.loads(mark.read_text()).get("fingerprint") if mark.exists() else \
        json.loads(store.read_text())["dataset"]["fingerprint"] if store.exists() else now
    if before != now:
        for old in cells.glob(f"{name}.*.json"):
            old.unlink()
        print(f"{name}: the {dataset} dataset has changed; its cells are computed again")
    _write(mark, {"fingerprint": now})


def _store(path: Path, model: str, dataset: str, layers: list[str], pool: str, limit=None):
    if path.exists():
        store = actclust.ActivationStore(path)
        same = store.manifest["dataset"]["fingerprint"] == dataset_fingerprint(dataset, limit)
        if same and set(layers) <= set(store.layers):
            return store
        shutil.rmtree(path)
    return actclust.capture(model, dataset, layers, pool=pool, out=path, limit=limit,
                            progress=True)


def fit_one(method: str, X, y, seed: int, other: dict, layer: str | None,
            fit_on=None) -> dict:
    k = len(np.unique(y))
    start = time.perf_counter()
    model = METHODS[method](k, seed, layer).fit(X if fit_on is None else fit_on)
    seconds = time.perf_counter() - start
    labels = np.asarray(model.labels_)
    scores = cluster_scores(y, labels)
    return {"accuracy": scores["accuracy"], "nmi": scores["nmi"], "ari": scores["ari"],
            "seconds": seconds, "threads": torch.get_num_threads(),
            "load": os.getloadavg()[0],
            "largest": float(np.bincount(labels, minlength=k).max() / len(labels)),
            "self_probe": self_probe_accuracy(X, labels, random_state=seed),
            **{f"nmi_{name}": cluster_scores(values, labels)["nmi"]
               for name, values in other.items()}}


def run_cells(inputs, methods, seeds, cache: Path) -> dict:
    """{input: {method: [record per seed]}}, computing only what the cache lacks; each
    input's kNN purity is cached as the record of the pseudo-method ``_purity``."""
    cells = cache / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in inputs:
        X = y = None
        layer = f"blocks.{name.split('-')[1]}.hook_out" if name.startswith("minilm-") else None
        drop_stale_cells(name, cells)
        purity = cells / f"{name}._purity.json"
        if not purity.exists():
            X, y, other = load_input(name, cache)
            _write(purity, {"knn_purity": knn_purity(X, y, k=20)})
        results.setdefault(name, {})["_purity"] = [json.loads(purity.read_text())]
        for method in methods:
            if not applies(method, name):
                continue
            for seed in range(seeds):
                path = cells / f"{name}.{method}.{seed}.json"
                if not path.exists():
                    if X is None:
                        X, y, other = load_input(name, cache)
                    record = fit_one(method, X, y, seed, other, layer,
                                     method_input(method, name, X, cache)
                                     if method == "TURTLE-3+5" else None)
                    _write(path, record)
                    print(f"{name:11s} {method:11s} seed {seed}: NMI {record['nmi']:.3f} "
                          f"acc {record['accuracy']:.3f} self-probe {record['self_probe']:.3f}"
                          f" {record['seconds']:6.1f} s", flush=True)
                results[name].setdefault(method, []).append(json.loads(path.read_text()))
    return results


def _write(path: Path, record) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)  # a killed run never leaves a half record


def run_ccs(seeds, cache: Path) -> dict:
    """CCS (accuracy up to sign) and a linear probe on the truth pairs, per layer."""
    from actclust.probes import LinearProbe

    path = cache / "cells" / f"ccs.{seeds}.json"
    if path.exists():
        return json.loads(path.read_text())
    layers = [f"blocks.{n}.hook_out" for n in MINILM_LAYERS]
    store = _store(cache / "minilm-truth", "minilm", "truth", layers, "last")
    out = {}
    for layer in layers:
        X_pos, X_neg, y = contrast_pairs(store, layer)
        truth = (np.asarray(y) == "true").astype(int) if y.dtype.kind not in "iub" else y
        pairs = np.hstack([X_pos, X_neg])
        ccs, probe, seconds = [], [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            test = rng.permutation(len(pairs))[: len(pairs) // 4]
            train = np.setdiff1d(np.arange(len(pairs)), test)
            start = time.perf_counter()
            model = CCS(random_state=seed).fit(pairs[train])
            seconds.append(time.perf_counter() - start)
            ccs.append(model.accuracy(pairs[test], truth[test]))
            diff = X_pos - X_neg  # the probe sees the same pairs, with labels
            lp = LinearProbe(random_state=seed).fit(diff[train], truth[train])
            probe.append(float((lp.predict(diff[test]) == truth[test]).mean()))
        out[layer] = {"ccs": ccs, "probe": probe, "seconds": seconds}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path)
    return out


def pm(values, digits=3) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1) if len(values) > 1 else 0:.{digits}f}"


def markdown(results: dict, ccs: dict, seeds: int) -> str:
    records = [r for m in results.values() for method, recs in m.items()
               if not method.startswith("_") for r in recs]
    threads = "/".join(sorted({str(r.get("threads", "?")) for r in records}))
    load = np.mean([r.get("load", np.nan) for r in records])
    fit_minutes = (sum(r["seconds"] for r in records)
                   + sum(sum(c["seconds"]) for c in ccs.values())) / 60
    lines = [
        "# Results on the bundled data",
        "",
        "Generated by `python benchmarks/quality.py` (do not edit by hand; the reading at "
        "the end is written with the numbers in front of us and checked on each "
        "regeneration).",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__} with {threads} thread(s) per fit, no GPU. "
        f"Run on {datetime.date.today().isoformat()}; {fit_minutes:.0f} min of fitting in all; "
        f"mean 1-minute load average during the fits {load:.1f} (fit times grow when other "
        "work shares the cores).",
        "",
        f"Every reporter runs with its defaults and random_state 0..{seeds - 1}; numbers are "
        f"mean ± sd over the {seeds} seeds. *Accuracy* is cluster accuracy (Hungarian "
        "matching of clusters to classes), *largest* the mean share of rows in the largest "
        "cluster (0.10 is balanced for 10 classes), *fit s* the wall time of one fit "
        "(pretraining included). *Self-probe* is the label-free score: the 5-fold "
        "cross-validated accuracy of a logistic regression trained on the reporter's own "
        "clusters (`actclust.label_free.self_probe_accuracy`). Rows in **bold** beat "
        "k-means on NMI by more than one sd. *kNN purity*: the share of a row's 20 nearest "
        "rows (cosine) with its class; neighbour-pair methods (SCAN, TEMI, IIC) can only "
        "beat k-means where it is high.",
        "",
    ]
    for name, by_method in results.items():
        by_method = {m: recs for m, recs in by_method.items() if not m.startswith("_")}
        extra = sorted({key for recs in by_method.values() for r in recs for key in r
                        if key.startswith("nmi_")})
        head = "".join(f" NMI vs {key[4:]} |" for key in extra)
        purity = results[name]["_purity"][0]["knn_purity"]
        lines += [f"## {name}: {DESCRIPTIONS[name]}", "", f"kNN purity {purity:.3f}.", "",
                  f"| reporter | accuracy | NMI | ARI |{head} self-probe | largest | fit s |",
                  "|---|---|---|---|" + "---|" * len(extra) + "---|---|---|"]
        base = np.array([r["nmi"] for r in by_method["KMeans"]])
        for method, records in by_method.items():
            get = lambda key: [r[key] for r in records]  # noqa: E731
            nmis = np.array(get("nmi"))
            better = method != "KMeans" and nmis.mean() - base.mean() > max(
                nmis.std(ddof=1), base.std(ddof=1))
            label = f"**{method}**" if better else method
            others = "".join(f" {pm(get(key))} |" for key in extra)
            lines.append(f"| {label} | {pm(get('accuracy'))} | {pm(nmis)} | {pm(get('ari'))} "
                         f"|{others} {pm(get('self_probe'))} | {np.mean(get('largest')):.2f} "
                         f"| {pm(get('seconds'), 1)} |")
        lines.append("")
    if ccs:
        lines += ["## CCS: MiniLM on the bundled `truth` contrast pairs (last token)", "",
                  "Accuracy on held-out pairs (a quarter, by seed): CCS up to sign flip, "
                  "without labels, against a linear probe trained with labels on the "
                  "difference of the two sides.", "",
                  "| layer | CCS accuracy | probe accuracy | CCS fit s |", "|---|---|---|---|"]
        for layer, rec in ccs.items():
            lines.append(f"| {layer} | {pm(rec['ccs'])} | {pm(rec['probe'])} | "
                         f"{pm(rec['seconds'], 1)} |")
        lines.append("")
    if CONCEPTS:  # written by benchmarks/concepts.py, which has its own, longer run
        lines += [CONCEPTS, ""]
    lines += ["## Reading", "", *facts(results), "", READING]
    return "\n".join(lines) + "\n"


def facts(results: dict) -> list[str]:
    """Per input: which reporters beat k-means on NMI and which lose; the label-free
    choice (highest mean self-probe accuracy) against the labelled best (highest NMI)."""
    out, agree = [], []
    for name, by_method in results.items():
        means = {m: {key: np.mean([r[key] for r in recs]) for key in ("nmi", "self_probe")}
                 for m, recs in by_method.items() if not m.startswith("_")}
        base = means["KMeans"]["nmi"]
        wins = [m for m in means if m != "KMeans" and means[m]["nmi"] > base]
        losses = [m for m in means if m != "KMeans" and m not in wins]
        chosen = max(means, key=lambda m: means[m]["self_probe"])
        best = max(means, key=lambda m: means[m]["nmi"])
        agree.append(chosen == best)
        out.append(f"- {name}: k-means NMI {base:.3f}; higher mean: "
                   f"{', '.join(wins) or 'none'}; lower: {', '.join(losses) or 'none'}. "
                   f"Label-free choice {chosen} (NMI {means[chosen]['nmi']:.3f}), labelled "
                   f"best {best} ({means[best]['nmi']:.3f}).")
    out.append(f"- The label-free choice is the labelled best on {sum(agree)} of "
               f"{len(agree)} inputs.")
    return out


READING = (Path(__file__).with_name("quality_reading.md").read_text()
           if Path(__file__).with_name("quality_reading.md").exists() else "")
CONCEPTS = (Path(__file__).with_name("concepts_results.md").read_text().strip()
            if Path(__file__).with_name("concepts_results.md").exists() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--inputs", default=",".join(DEFAULT_INPUTS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "docs" / "results.md"))
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "actclust" / "quality"))
    parser.add_argument("--fresh", action="store_true", help="forget cached fits")
    parser.add_argument("--no-ccs", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads per fit (default: torch's)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = Path(args.cache)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.fresh and (cache / "cells").exists():
        shutil.rmtree(cache / "cells")

    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(METHODS)}")
    results = run_cells(args.inputs.split(","), methods, args.seeds, cache)
    ccs = {} if args.no_ccs else run_ccs(args.seeds, cache)
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(markdown(results, ccs, args.seeds))
    os.replace(tmp, out)
    print(f"wrote {out}")

    def mean_nmi(recs):
        return np.mean([r["nmi"] for r in recs])

    kmeans = np.mean([mean_nmi(m["KMeans"]) for m in results.values()])
    best = np.mean([max([mean_nmi(recs) for meth, recs in m.items() if meth in FROZEN]
                        or [np.nan]) for m in results.values()])
    print(f"kmeans_nmi={kmeans:.3f} best_frozen_nmi={best:.3f} ratio={best / kmeans:.3f}")


if __name__ == "__main__":
    main()
