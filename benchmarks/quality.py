"""Cluster quality of every deep reporter next to k-means, on the bundled data: regenerates
``docs/results.md``.

Inputs (the number of clusters is the number of classes):

- ``digits``: ``load_digits`` pixels, 1,797 x 64, 10 digit classes;
- ``digits-mlp``: the bundled ``digits-mlp`` network's ``relu2`` activations on the same
  images (1,797 x 64);
- ``minilm-N``: MiniLM, ``blocks.N.hook_out`` mean-pooled over each sentence of the bundled
  ``topics`` set (3,200 x 384), scored against its 10 topics.

Each of KMeans (``n_init=10``), DEC, IDEC, IIC and DeepCluster is fitted with its
defaults and ``random_state`` 0..seeds-1; cluster accuracy (Hungarian), NMI and ARI are
reported as mean ± sd over seeds with the wall time of each fit, and the mean share of
the largest cluster (a collapsed or unbalanced solution shows there). CCS is scored on
the ``truth`` contrast pairs (last-token pooled) against a linear probe on the same pairs.

Every finished fit is cached (``--cache``), so an interrupted run resumes; ``--fresh``
starts over. Last line: ``kmeans_nmi=<mean over inputs> best_deep_nmi=<...> ratio=<deep /
kmeans>``.

    python benchmarks/quality.py [--seeds 5] [--inputs digits,digits-mlp,minilm-1,...]
        [--out docs/results.md]
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
from actclust.metrics import cluster_scores
from actclust.reporters import DEC, IDEC, IIC, CCS, DeepCluster, KMeans
from actclust.reporters.backbones import following_blocks
from actclust.reporters.ccs import contrast_pairs

METHODS = {
    "KMeans": lambda k, seed, layer: KMeans(k, n_init=10, random_state=seed),
    "DEC": lambda k, seed, layer: DEC(k, random_state=seed),
    "IDEC": lambda k, seed, layer: IDEC(k, random_state=seed),
    "IIC": lambda k, seed, layer: IIC(k, random_state=seed),
    "DeepCluster": lambda k, seed, layer: DeepCluster(k, random_state=seed),
    # the model's own following blocks as backbone; only where a block follows the layer
    "DeepCluster-blocks": lambda k, seed, layer: DeepCluster(
        k, backbone=following_blocks("minilm", layer), lr=BLOCKS_LR, random_state=seed),
}
BLOCKS_LR = 1e-2
MINILM_LAYERS = (3, 5)  # a middle block and the last
DEFAULT_INPUTS = ["digits", "digits-mlp", *(f"minilm-{n}" for n in MINILM_LAYERS)]
DESCRIPTIONS = {
    "digits": "load_digits pixels (1,797 x 64), 10 digit classes",
    "digits-mlp": "digits-mlp `relu2` activations (1,797 x 64), 10 digit classes",
    **{f"minilm-{n}": f"MiniLM `blocks.{n}.hook_out`, mean-pooled, bundled `topics` "
       "(3,200 x 384), 10 topics" for n in range(6)},
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
    raise SystemExit(f"unknown input {name!r}; choose from digits, digits-mlp, minilm-0..5")


def _store(path: Path, model: str, dataset: str, layers: list[str], pool: str):
    if path.exists():
        store = actclust.ActivationStore(path)
        if set(layers) <= set(store.layers):
            return store
        shutil.rmtree(path)
    return actclust.capture(model, dataset, layers, pool=pool, out=path, progress=True)


def fit_one(method: str, X, y, seed: int, other: dict, layer: str | None) -> dict:
    k = len(np.unique(y))
    start = time.perf_counter()
    model = METHODS[method](k, seed, layer).fit(X)
    seconds = time.perf_counter() - start
    labels = np.asarray(model.labels_)
    scores = cluster_scores(y, labels)
    return {"accuracy": scores["accuracy"], "nmi": scores["nmi"], "ari": scores["ari"],
            "seconds": seconds, "threads": torch.get_num_threads(),
            "load": os.getloadavg()[0],
            "largest": float(np.bincount(labels, minlength=k).max() / len(labels)),
            **{f"nmi_{name}": cluster_scores(values, labels)["nmi"]
               for name, values in other.items()}}


def run_cells(inputs, seeds, cache: Path) -> dict:
    """{input: {method: [record per seed]}}, computing only what the cache lacks."""
    cells = cache / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in inputs:
        X = y = None
        layer = f"blocks.{name.split('-')[1]}.hook_out" if name.startswith("minilm-") else None
        for method in METHODS:
            if method == "DeepCluster-blocks" and (layer is None or layer.startswith("blocks.5")):
                continue
            for seed in range(seeds):
                path = cells / f"{name}.{method}.{seed}.json"
                if not path.exists():
                    if X is None:
                        X, y, other = load_input(name, cache)
                    record = fit_one(method, X, y, seed, other, layer)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(record))
                    os.replace(tmp, path)  # a killed run never leaves a half record
                    print(f"{name:11s} {method:11s} seed {seed}: NMI {record['nmi']:.3f} "
                          f"acc {record['accuracy']:.3f} ARI {record['ari']:.3f} "
                          f"{record['seconds']:6.1f} s", flush=True)
                results.setdefault(name, {}).setdefault(method, []).append(
                    json.loads(path.read_text()))
    return results


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
    records = [r for m in results.values() for recs in m.values() for r in recs]
    threads = "/".join(sorted({str(r.get("threads", "?")) for r in records}))
    load = np.mean([r.get("load", np.nan) for r in records])
    fit_minutes = (sum(r["seconds"] for m in results.values() for recs in m.values()
                       for r in recs) + sum(sum(c["seconds"]) for c in ccs.values())) / 60
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
        "(pretraining included). Rows in **bold** beat k-means on NMI by more than one sd.",
        "",
    ]
    for name, by_method in results.items():
        extra = sorted({key for recs in by_method.values() for r in recs for key in r
                        if key.startswith("nmi_")})
        head = "".join(f" NMI vs {key[4:]} |" for key in extra)
        lines += [f"## {name}: {DESCRIPTIONS[name]}", "",
                  f"| reporter | accuracy | NMI | ARI |{head} largest | fit s |",
                  "|---|---|---|---|" + "---|" * len(extra) + "---|---|"]
        base = np.array([r["nmi"] for r in by_method["KMeans"]])
        for method, records in by_method.items():
            get = lambda key: [r[key] for r in records]  # noqa: E731
            nmis = np.array(get("nmi"))
            better = method != "KMeans" and nmis.mean() - base.mean() > max(
                nmis.std(ddof=1), base.std(ddof=1))
            label = f"**{method}**" if better else method
            others = "".join(f" {pm(get(key))} |" for key in extra)
            lines.append(f"| {label} | {pm(get('accuracy'))} | {pm(nmis)} | {pm(get('ari'))} "
                         f"|{others} {np.mean(get('largest')):.2f} | {pm(get('seconds'), 1)} |")
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
    lines += ["## Reading", "", *facts(results), "", READING]
    return "\n".join(lines) + "\n"


def facts(results: dict) -> list[str]:
    """One line per input: which deep reporters beat k-means on NMI, which lose."""
    out = []
    for name, by_method in results.items():
        base = np.mean([r["nmi"] for r in by_method["KMeans"]])
        wins = [m for m in by_method if m != "KMeans"
                and np.mean([r["nmi"] for r in by_method[m]]) > base]
        losses = [m for m in by_method if m != "KMeans" and m not in wins]
        out.append(f"- {name}: k-means NMI {base:.3f}; higher mean: "
                   f"{', '.join(wins) or 'none'}; lower: {', '.join(losses) or 'none'}.")
    return out


READING = (Path(__file__).with_name("quality_reading.md").read_text()
           if Path(__file__).with_name("quality_reading.md").exists() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--inputs", default=",".join(DEFAULT_INPUTS))
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

    results = run_cells(args.inputs.split(","), args.seeds, cache)
    ccs = {} if args.no_ccs else run_ccs(args.seeds, cache)
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(markdown(results, ccs, args.seeds))
    os.replace(tmp, out)
    print(f"wrote {out}")

    kmeans = np.mean([np.mean([r["nmi"] for r in m["KMeans"]]) for m in results.values()])
    best = np.mean([max(np.mean([r["nmi"] for r in recs]) for meth, recs in m.items()
                        if meth != "KMeans") for m in results.values()])
    print(f"kmeans_nmi={kmeans:.3f} best_deep_nmi={best:.3f} ratio={best / kmeans:.3f}")


if __name__ == "__main__":
    main()
