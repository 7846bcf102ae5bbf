"""``actclust sweep``: the command-line face of :func:`~actclust.sweep.run_sweep`."""

from __future__ import annotations

import argparse


def add_command(subparsers) -> argparse.ArgumentParser:
    """Add ``sweep`` to an ``argparse`` sub-command set; its func returns an exit code.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="actclust")
        >>> _ = add_command(parser.add_subparsers())
        >>> args = parser.parse_args(["sweep", "s.toml", "--jobs", "2"])
        >>> args.file, args.jobs, args.backend, args.func.__name__
        ('s.toml', 2, None, 'cmd_sweep')
    """
    p = subparsers.add_parser(
        "sweep", help="run a sweep file: layers x reporters x seeds, plus probes",
        description="Run every (layer x reporter x seed) cell and every probe of a sweep "
        "file into one results table. Finished cells are recorded one by one; --resume "
        "skips them after an interruption.")
    p.add_argument("file", nargs="?", help="the sweep file (.toml)")
    p.add_argument("--backend", choices=["local", "ray"],
                   help="where cells run (default: run.backend of the file, else local)")
    p.add_argument("--jobs", type=int, help="cells at once on the local backend "
                   "(default: run.jobs of the file, else 1)")
    p.add_argument("--address", help="Ray cluster address (default: run.address, else a "
                   "local Ray instance)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="skip the cells an earlier run of this sweep finished")
    group.add_argument("--overwrite", action="store_true",
                       help="forget finished cells and run them all again")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument("--quiet", action="store_true", help="no progress bar or cell lines")
    p.add_argument("--print-example", action="store_true",
                   help="print a commented example sweep file and exit")
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args) -> int:
    """Run the sweep named on the command line, print its summary; 1 if a cell failed.

    Example:
        >>> args = argparse.Namespace(print_example=True)
        >>> cmd_sweep(args)  # doctest: +ELLIPSIS
        # An actclust sweep: ...
        0
    """
    from ..errors import ActclustError
    from .runner import run_sweep
    from .spec import EXAMPLE, check_run

    if args.print_example:
        print(EXAMPLE, end="")
        return 0
    if not args.file:
        raise ActclustError("no sweep file given: actclust sweep sweep.toml "
                            "(--print-example prints one to start from)")
    check_run(jobs=args.jobs, jobs_name="--jobs")
    result = run_sweep(args.file, backend=args.backend, jobs=args.jobs, resume=args.resume,
                       overwrite=args.overwrite, address=args.address,
                       report=False if args.no_report else None, progress=not args.quiet)
    print(result.summary())
    return 1 if len(result.failures) else 0
