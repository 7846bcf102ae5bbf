"""The ``actclust report`` command, added to the main parser by :func:`add_command`."""

from __future__ import annotations

from pathlib import Path


def add_command(subparsers) -> None:
    """Add ``report STORE [--results R] -o report.html`` to an argparse subparsers object.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="actclust")
        >>> add_command(parser.add_subparsers())
        >>> args = parser.parse_args(["report", "store", "-o", "r.html"])
        >>> args.store, args.out, args.results, args.func.__name__
        ('store', 'r.html', None, 'cmd_report')
    """
    from .concepts_section import MAX_ROWS
    from .maps import MAX_POINTS

    p = subparsers.add_parser(
        "report", help="write a self-contained HTML report (figures, tables, cluster pages)")
    p.add_argument("store", help="store directory")
    p.add_argument("--results", help="results table from `actclust compare` (.parquet); "
                   "default: one quick k-means fit per layer, no probes")
    p.add_argument("-o", "--out", default="report.html", help="HTML file (default report.html)")
    p.add_argument("--label", help="label for maps, heatmaps and curves (default: the first "
                   "label in the results with reporter and probe rows)")
    p.add_argument("--reporter", help="method whose best and worst layers are shown "
                   "(default: the first reporter in the results)")
    p.add_argument("--map", default="umap", choices=["umap", "pca"],
                   help="layer map projection (pca is faster)")
    p.add_argument("--max-points", type=int, default=MAX_POINTS,
                   help=f"rows drawn per map, a random sample (default {MAX_POINTS:,})")
    p.add_argument("--no-dashboards", action="store_true", help="leave out the cluster pages")
    concepts = p.add_mutually_exclusive_group()
    concepts.add_argument("--concepts", action="store_true", default=None,
                          help="include the Concepts section (default: for token stores)")
    concepts.add_argument("--no-concepts", action="store_false", dest="concepts",
                          help="leave out the Concepts section")
    p.add_argument("--concept-k", type=int, default=400,
                   help="clusters per layer in the Concepts section (default 400)")
    p.add_argument("--concept-rows", type=int, default=MAX_ROWS,
                   help="the Concepts section fits each layer on a seeded sample of at most "
                   f"this many rows (default {MAX_ROWS:,}; 0: every row)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from ..errors import ActclustError
    from ..store.outputs import check_output_file
    from .report import write_report

    if not Path(args.store).is_dir():
        raise ActclustError(f"store {args.store} is not a directory; give the path that "
                            "`actclust capture --out` wrote")
    if args.concept_k < 2:
        raise ActclustError(f"--concept-k must be at least 2, got {args.concept_k}")
    if args.concept_rows < 0 or args.concept_rows == 1:
        raise ActclustError(f"--concept-rows must be 0 (every row) or at least 2, got "
                            f"{args.concept_rows}")
    if args.max_points < 3:
        raise ActclustError(f"--max-points must be at least 3, got {args.max_points}")
    check_output_file(args.out, "-o/--out", suffixes=(".html", ".htm"))  # before the maps and fits, not after
    path = write_report(args.store, args.results, args.out, label=args.label,
                        reporter=args.reporter, map_method=args.map,
                        max_points=args.max_points, dashboards=not args.no_dashboards,
                        concepts=args.concepts, concept_k=args.concept_k,
                        concept_rows=args.concept_rows or None)
    print(f"report: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0
