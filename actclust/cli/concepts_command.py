"""``actclust concepts``: over-cluster one layer and align its clusters with every label."""

from __future__ import annotations

import argparse


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def add_command(subparsers) -> argparse.ArgumentParser:
    """Add ``concepts STORE --layer L --out concepts.parquet`` to a subparsers object.

    Example:
        >>> parser = argparse.ArgumentParser(prog="actclust")
        >>> _ = add_command(parser.add_subparsers())
        >>> args = parser.parse_args(["concepts", "s", "--layer", "blocks.0.hook_out",
        ...                           "--out", "c.parquet"])
        >>> args.k, args.method, args.theta, args.func.__name__
        (400, 'kmeans', 0.9, 'cmd_concepts')
    """
    from . import POSITIVE, SEED, int_at_least

    p = subparsers.add_parser(
        "concepts", help="over-cluster a layer, align clusters with every label (ConceptX)",
        description="Cluster one layer into many groups, find each group's best matching "
        "value of every label column (aligned: at least THETA of its labelled rows carry "
        "it), and list the unaligned groups that hold together without labels.")
    p.add_argument("store", help="store directory")
    p.add_argument("--layer", required=True, help="the layer to cluster")
    p.add_argument("--k", type=int_at_least(2), default=400,
                   help="number of clusters (default 400; ConceptX uses 400-1,200)")
    p.add_argument("--method", default="kmeans",
                   help="a clustering reporter, optionally with settings, e.g. "
                   "'agglomerative(linkage=ward)' (default kmeans)")
    p.add_argument("--labels", help="label columns, comma-separated (default: every "
                   "column with 2 to 100 values, not ids, tokens, positions or text)")
    p.add_argument("--theta", type=_share, default=0.9,
                   help="share of a cluster's labelled rows that must carry one value "
                   "(default 0.9)")
    p.add_argument("--max-unknown", type=_share, default=0.4,
                   help="largest share of a cluster's rows without a known value for it to "
                   "count as aligned (default 0.4)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--examples", type=POSITIVE, default=5,
                   help="rows shown per novel candidate (default 5)")
    p.add_argument("--novel", type=int_at_least(0), default=10,
                   help="novel candidates printed (default 10)")
    p.add_argument("--max-rows", type=int_at_least(2), default=None,
                   help="cluster and align a seeded sample of at most this many rows "
                   "(default: every row; a layer of millions of token rows fits in "
                   "bounded time and memory on a sample)")
    p.add_argument("--out", required=True, help="the per-cluster table (.parquet)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_concepts)
    return p


def cmd_concepts(args) -> int:
    """Run :func:`~actclust.concepts.concept_table`, write its table, print the summary."""
    from .._util.files import atomic_write
    from ..concepts import concept_table
    from ..errors import ActclustError
    from ..store import ActivationStore
    from ..store.outputs import check_output_file
    from .commands import _split

    out = check_output_file(args.out, suffixes=(".parquet",))
    if out.exists() and not args.overwrite:
        raise ActclustError(f"--out {out} already exists; pass --overwrite to replace it")
    store = ActivationStore(args.store)
    labels = _split(args.labels)
    if args.labels is not None and not labels:
        raise ActclustError("--labels is empty: name one or more label columns")
    result = concept_table(store, args.layer, k=args.k, method=args.method, labels=labels,
                           theta=args.theta, max_unknown=args.max_unknown, seed=args.seed,
                           n_examples=args.examples, n_novel=args.novel,
                           max_rows=args.max_rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: result.table.to_parquet(tmp, index=False))
    print("\n".join(describe(result, args.novel)))
    print(f"table ({len(result.table)} rows, one per cluster and label): {out}")
    return 0


def describe(result, n_novel: int = 10) -> list[str]:
    """The lines ``actclust concepts`` prints: the summary, the concepts found per label,
    and the novel candidates with their examples."""
    s = result.seconds
    rows = f"{result.n_fitted:,} rows" if result.sample is None else \
        f"{result.n_fitted:,} of {result.n_rows:,} rows (a seeded sample)"
    lines = [f"{result.method} on {result.layer}: {result.k} clusters over "
             f"{rows} (fit {s['fit']:.1f} s, align {s['align']:.1f} s, "
             f"novel {s['novel']:.1f} s); aligned at theta {result.theta:g}, "
             f"unknown <= {result.max_unknown:g}",
             f"  {'label':<18} {'aligned':>9} {'share':>6} {'rows':>6}  concepts found"]
    table = result.table
    for row in result.summary.itertuples():
        part = table[table["aligned"] & (table["label"] == row.label)]
        found = part.groupby("value")["group"].count().sort_values(ascending=False)
        shown = ", ".join(f"{v} ({n})" for v, n in found.head(6).items())
        more = f", +{len(found) - 6} more" if len(found) > 6 else ""
        lines.append(f"  {row.label:<18} {row.aligned:>4}/{row.groups:<4} "
                     f"{row.aligned_share:>6.1%} {row.row_coverage:>6.1%}  {shown}{more}"
                     .rstrip())
    from ..concepts._novel import MIN_SIZE

    novel = result.novel
    lines.append(f"novel candidates (aligned with no label, at least {MIN_SIZE} rows): "
                 f"{len(novel)}"
                 + (f"; the {min(n_novel, len(novel))} most coherent:" if n_novel and len(novel)
                    else ""))
    for row in novel.head(n_novel).itertuples():
        lines.append(f"  #{row.rank} cluster {row.group} ({row.size} rows) tightness "
                     f"{row.tightness:.2f} separability {row.separability:.2f} coherence "
                     f"{row.coherence:.2f}")
        lines += [f"      {' '.join(str(text).split())}" for text in row.examples]
    return lines
