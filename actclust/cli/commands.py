"""The commands of ``actclust``: each takes the parsed arguments and returns an exit status.

Expected failures are raised (mostly as :class:`~actclust.errors.ActclustError`); the
handler in :func:`actclust.cli.main` turns them into one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ActclustError

EXIT_BAD_STORE = 1  # `verify` found problems


def cmd_models(args) -> int:
    from ..models import BUNDLED, load_target

    if not args.model:
        print("bundled models (also: any Hugging Face model directory, or in Python a "
              "TransformerBridge or nn.Module):")
        for name, desc in BUNDLED.items():
            print(f"  {name:<12} {desc}")
        print("\n`actclust models NAME` lists its hook names.")
        return 0
    target = load_target(args.model, revision=args.revision)
    names = target.hook_names(include_modules=args.all or target.kind == "module")
    hint = " (globs like 'blocks.*.hook_resid_post' select many)" \
        if any(n.startswith("blocks.") for n in names) else ""
    print(f"{target.name}: {len(names)} hook points{hint}")
    for name in names:
        point = target.hook_points[name]
        where = "" if name == point.module_path else \
            f"  <- {point.where} of {point.module_path}"
        print(f"  {name}{where}")
    return 0


def cmd_datasets(args) -> int:
    from ..data import available

    print("bundled datasets (generated, no downloads):")
    for name, desc in available().items():
        print(f"  {name:<8} {desc}")
    print("\nAlso: --dataset FILE.jsonl|.json|.csv|.parquet with a text column "
          "(--text-column).")
    return 0


def cmd_capture(args) -> int:
    from ..capture import DEFAULT_SHARD_ROWS, capture

    store = capture(args.model, args.dataset, args.layers, pool=args.pool, out=args.out,
                    batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                    max_length=args.max_length, exclude_special=args.exclude_special,
                    limit=args.limit, shard_rows=args.shard_rows or DEFAULT_SHARD_ROWS,
                    resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                    text_column=args.text_column, verify=args.verify,
                    revision=args.revision, backend=args.backend, address=args.address,
                    workers=args.workers, checksum=args.checksum)
    print(f"wrote {len(store)} rows x {len(store.layers)} layers to {store.root}")
    return 0


def describe(store) -> str:
    """A human summary of a store (``actclust info``)."""
    m = store.manifest
    cap = m["capture"]
    lines = [
        f"store      {store.root}",
        f"complete   {m['complete']}",
        f"model      {m['model']['name']} ({m['model'].get('kind', '?')}, "
        f"config {m['model'].get('config_hash', '?')})",
        f"dataset    {m['dataset']['name']} ({m['dataset']['n_docs']} docs, "
        f"sha256 {m['dataset']['fingerprint'][:12]})",
        f"capture    pool={cap['pool']} dtype={cap['storage_dtype']} "
        f"max_length={cap['max_length']} exclude_special={cap['exclude_special']} "
        f"truncated_docs={cap['truncated_docs']}",
        f"rows       {m['n_rows']}",
        f"size       {_human_bytes(store.size_bytes())}",
        f"written by actclust {m['actclust_version']} on {m['created']}",
        "layers:",
    ]
    for name, info in m["layers"].items():
        shape = "x".join(map(str, info["shape"])) if info["shape"] else "?"
        lines.append(f"  {name:<32} {shape:>14}  {info['dtype']:<8} "
                     f"{len(info['shards'])} shard(s)")
    return "\n".join(lines)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def cmd_info(args) -> int:
    from ..store import ActivationStore

    print(describe(ActivationStore(args.store, allow_incomplete=True)))
    return 0


def cmd_verify(args) -> int:
    from ..store import verify_store

    problems = verify_store(args.store)
    if problems:
        for problem in problems:
            # one line a problem, even when a library's message spans several
            print("BAD  " + " ".join(p.strip() for p in problem.splitlines() if p.strip()),
                  file=sys.stderr)
        print(f"{args.store}: {len(problems)} problem(s) found", file=sys.stderr)
        return EXIT_BAD_STORE
    print(f"{args.store}: OK (every shard matches its checksum, shapes and rows align)")
    return 0


def _split(text):
    """Comma-separated items; commas inside brackets (a reporter's settings) do not split.

    Example:
        >>> _split("kmeans, gmm(covariance_type=diag, n_components=10)")
        ['kmeans', 'gmm(covariance_type=diag, n_components=10)']
    """
    if not text:
        return None
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _reporters(texts, params):
    """(method name, estimator) of each reporter text, with the ``--param`` settings."""
    from ..reporters.settings import parse_param, reporter_from_text

    extra = dict(parse_param(p) for p in params or [])
    return [reporter_from_text(text, **extra) for text in texts]


def cmd_fit(args) -> int:
    import numpy as np
    import pandas as pd

    from ..metrics import cluster_scores
    from ..store import ActivationStore

    from ..store.outputs import check_output_file

    if args.out is not None:
        check_output_file(args.out, suffixes=(".parquet",))
    (name, model), = _reporters([args.reporter], args.param)
    store = ActivationStore(args.store)
    view = store.layer(args.layer)
    labels = _split(args.labels) or store.label_columns
    for label in labels:
        store.labels(label)  # unknown columns fail before the fit
    k = args.n_clusters
    if k is None:
        if not labels:
            raise ActclustError("the store has no label columns: pass --n-clusters")
        k = int(pd.Series(store.labels(labels[0])).nunique())
    from ..compare import reporter_for
    from ..reporters import configure

    reporter_for(model)  # refuses a reporter that does not cluster
    from ..concepts import is_feature_reporter

    if is_feature_reporter(model):
        raise ActclustError(f"{name} finds features, not clusters, so `fit` has no cluster "
                            "per row to score; use `actclust compare --reporters "
                            f"{name}` (FVU, L0, dead share and each label's aligned share)")
    configure(model, n_clusters=k, seed=args.seed).fit(view)
    found = model.labels_
    sizes = np.bincount(found, minlength=k)
    print(f"{name} on {args.layer}: {k} clusters over {len(found)} rows; sizes "
          f"min {sizes.min()}, median {int(np.median(sizes))}, max {sizes.max()}")
    for label in labels:
        scores = cluster_scores(store.labels(label), found)
        print(f"  vs {label:<16} " + "  ".join(f"{m} {v:.3f}" for m, v in scores.items()))
    if args.out:
        from ..compare import write_results

        path = write_results(pd.DataFrame({"row": np.arange(len(found)), "cluster": found}),
                             args.out)
        print(f"cluster of each row: {path}")
    return 0


def cmd_compare(args) -> int:
    from ..compare import compare, summarize, write_results
    from ..store.outputs import check_output_file

    check_output_file(args.out, suffixes=(".parquet",))
    labels = _split(args.labels)
    if not labels:
        raise ActclustError("--labels is empty: name one or more label columns")
    reporters = dict(_reporters(_split(args.reporters) or [], args.param))
    if args.param and not reporters:
        raise ActclustError("--param sets a reporter's settings, but --reporters is empty")
    table = compare(args.store, labels, layers=args.layers, reporters=reporters,
                    seeds=args.seeds,
                    n_clusters=args.n_clusters, probes=not args.no_probes, probe=args.probe,
                    group_column=args.group_column, label_free=not args.no_label_free,
                    progress=not args.quiet)
    path = write_results(table, args.out)
    summary = summarize(table)
    wanted = summary["metric"].isin(["nmi", "accuracy", "self_probe_accuracy", "n_clusters",
                                     "probe_accuracy", "selectivity", "knn_purity"])
    print(f"{'layer':<26} {'method':<14} {'label':<12} {'metric':<20} mean ± sd")
    for row in summary[wanted].itertuples():
        print(f"{row.layer:<26} {row.method:<14} {row.label:<12} {row.metric:<20} "
              f"{row.mean:.3f} ± {0 if row.n < 2 else row.sd:.3f}")
    print(f"results ({len(table)} rows): {path}")
    return 0


def cmd_demo(args) -> int:
    from ..demo import run_demo
    from ..store.outputs import enclosing_store

    # The demo folder holds a store, the results and the report: it may not be a store's
    # or inside one.
    if not str(args.out).strip():
        raise ActclustError("--out is empty: name the directory to write")
    outer = enclosing_store(args.out)
    if outer is not None:
        raise ActclustError(f"--out {args.out} is inside the store {outer}; a store's "
                            "files are its own: write elsewhere")
    run_demo(Path(args.out), limit=args.limit, overwrite=args.overwrite)
    return 0
