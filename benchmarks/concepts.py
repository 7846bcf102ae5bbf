"""Concept alignment on MiniLM's token rows, block by block: k-means clusters and sparse
autoencoder features aligned with the bundled ``tokens`` labels.

Captures MiniLM ``blocks.0-5.hook_out`` over every token of the 2,000 ``tokens`` sentences
(cached under ``--cache``), then for each block:

- ``concept_table`` with K k-means clusters (default 400): the share of clusters aligned
  (precision >= 0.9, at most 40 % unknown) per label, the novel candidates, and its time;
- a TopK ``SparseAutoencoder`` (defaults but ``--sae-epochs``): FVU, L0 and dead share on
  the training rows, and the share of its latents (each latent's 50 top-activating rows)
  aligned with the same labels.

Prints markdown tables (for docs/results.md) and, last, the slowest concept table against
the 60 s target: ``concept_seconds_max=<s> target_s=60 ratio=<s/60>``.

    python benchmarks/concepts.py [--k 400] [--sae-epochs 20] [--threads 2]
"""

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import actclust  # noqa: E402
from actclust.concepts import align, concept_table, summarise  # noqa: E402
from actclust.reporters import SparseAutoencoder  # noqa: E402

LAYERS = [f"blocks.{i}.hook_out" for i in range(6)]
LABEL_SETS = {  # lexical first, semantic last
    "token_kind": "lexical", "casing": "lexical", "suffix": "morphological",
    "number_form": "lexical", "punct_kind": "lexical", "pos": "syntactic",
    "word_class": "syntactic", "semantic_class": "semantic", "position_bucket": "position",
    "template": "sentence"}


def token_store(cache: Path):
    from actclust.data import as_dataset

    path = cache / "minilm-tokens-all"
    if path.exists():
        store = actclust.ActivationStore(path)
        if store.manifest["dataset"]["fingerprint"] == as_dataset("tokens").fingerprint():
            return store
    return actclust.capture("minilm", "tokens", LAYERS, pool="none", out=path,
                            overwrite=path.exists(), progress=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=400)
    parser.add_argument("--sae-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=str(Path.home() / ".cache/actclust/concepts"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    store = token_store(Path(args.cache))
    labels = [c for c in LABEL_SETS if c in store.label_columns]
    rows = store.rows[labels]
    shares, sae_rows, times = [], [], {}
    for layer in LAYERS:
        start = time.perf_counter()
        result = concept_table(store, layer, k=args.k, labels=labels, seed=0)
        times[layer] = time.perf_counter() - start
        view = store.layer(layer)
        start = time.perf_counter()
        sae = SparseAutoencoder(epochs=args.sae_epochs, random_state=0).fit(view)
        sae_seconds = time.perf_counter() - start
        groups = {i: r for i, r in enumerate(sae.top_rows(view, n_rows=50)) if len(r)}
        features = summarise(align(groups, rows, labels))
        for source, summary in (("clusters", result.summary), ("SAE", features)):
            for r in summary.itertuples():
                shares.append({"layer": layer, "source": source, "label": r.label,
                               "aligned_share": r.aligned_share})
        sae_rows.append({"layer": layer, "fvu": sae.fvu_, "l0": sae.l0_,
                         "dead": sae.dead_fraction_, "sae_s": sae_seconds,
                         "concepts_s": times[layer], "novel": len(result.novel)})
        print(f"{layer}: concept table {times[layer]:.1f} s ({len(view):,} rows, K={args.k}),"
              f" SAE {sae_seconds:.1f} s, FVU {sae.fvu_:.3f}", flush=True)
    table = pd.DataFrame(shares).pivot_table(index=["label", "source"], columns="layer",
                                             values="aligned_share")[LAYERS]
    order = [*labels, "any"]
    table = table.reindex([(lab, s) for lab in order for s in ("clusters", "SAE")
                           if (lab, s) in table.index])
    print(f"\nShare aligned (theta 0.9), {len(store):,} token rows, K={args.k} k-means "
          f"clusters / {sae.n_latents_} SAE latents\n")
    print("| label | kind | source | " + " | ".join(f"block {i}" for i in range(6)) + " |")
    print("|---|---|---|" + "---|" * 6)
    for (label, source), values in table.iterrows():
        cells = " | ".join(f"{v:.0%}" for v in values)
        print(f"| {label} | {LABEL_SETS.get(label, 'any label')} | {source} | {cells} |")
    print("\n| block | concept table s | novel candidates | SAE FVU | SAE L0 | SAE dead | "
          "SAE fit s |\n|---|---|---|---|---|---|---|")
    for r in sae_rows:
        print(f"| {r['layer']} | {r['concepts_s']:.1f} | {r['novel']} | {r['fvu']:.3f} | "
              f"{r['l0']:.0f} | {r['dead']:.1%} | {r['sae_s']:.0f} |")
    worst = max(times.values())
    print(f"concept_seconds_max={worst:.1f} target_s=60 ratio={worst / 60:.3f}")


if __name__ == "__main__":
    main()
