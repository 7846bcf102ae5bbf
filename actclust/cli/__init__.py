"""The ``actclust`` command line: the parser and the one handler that turns failures into
one line. The commands themselves are in :mod:`actclust.cli.commands`.

One handler at the top turns every expected failure (bad input, unreadable or unwritable
files, invalid settings, malformed stores) into one line on stderr, ``actclust: error:
...``, and exit status 2. Exit status 1 means only that ``verify`` found problems in a
store. Anything else is a bug in actclust: its traceback is shown with a request to report
it (exit status 3). ``--debug`` (or ``ACTCLUST_DEBUG=1``) shows the traceback of every
failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings

from ..errors import ActclustError

from .commands import EXIT_BAD_STORE  # noqa: F401  (`verify` found problems)
EXIT_USAGE = 2  # an expected failure: bad input, files, permissions, settings
EXIT_BUG = 3  # an unexpected exception: a bug to report
EXIT_INTERRUPTED = 130


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"actclust: warning: {_one_line(message)}", file=file or sys.stderr)


def _one_line(message) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def expected_failure(err: BaseException):
    """The one-line message for a failure the user can cause and fix, or None for a bug.

    Example:
        >>> expected_failure(ActclustError("unknown layer 'x'"))
        "unknown layer 'x'"
        >>> expected_failure(PermissionError(13, "Permission denied", "/root/out.parquet"))
        'Permission denied: /root/out.parquet'
        >>> expected_failure(KeyError("bug")) is None
        True
    """
    if isinstance(err, ActclustError):
        return _one_line(err)
    if isinstance(err, OSError):
        where = f": {err.filename}" if err.filename else ""
        return _one_line(f"{err.strerror or err}{where}")
    if isinstance(err, MemoryError):
        return "out of memory; use a smaller --limit, a lower batch size or fewer layers"
    kind = type(err)
    # scikit-learn's parameter validation and pyarrow's "not a parquet file" are errors in
    # what the user passed, not in actclust.
    if kind.__name__ == "InvalidParameterError" and kind.__module__.startswith("sklearn"):
        return _one_line(err)
    if kind.__module__.startswith("pyarrow") and isinstance(err, Exception):
        return _one_line(f"cannot read a table: {err}")
    return None


def _debugging(args=None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("ACTCLUST_DEBUG", "") not in (
        "", "0")


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.showwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from .._progress import quiet

    try:
        with quiet(getattr(args, "quiet", False)):
            return args.func(args) or 0
    except KeyboardInterrupt:
        print("actclust: interrupted; finished shards are kept: rerun with --resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `actclust models minilm | head` closed the pipe: fine
        sys.stderr = open(os.devnull, "w")
        return 0
    except Exception as err:
        if _debugging(args):
            raise
        message = expected_failure(err)
        if message is not None:
            print(f"actclust: error: {message}", file=sys.stderr)
            return EXIT_USAGE
        traceback.print_exc()
        print(f"actclust: internal error ({type(err).__name__}); this is a bug in actclust, "
              "please report it with the traceback above", file=sys.stderr)
        return EXIT_BUG


class _Parser(argparse.ArgumentParser):
    """argparse with pip-style one-line errors (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)} "
                              f"(see {self.prog} --help)\n")


def int_at_least(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number no smaller than ``minimum``; 0 or a negative number
    is an error, never a silent default.

    Example:
        >>> int_at_least(1)("3")
        3
        >>> int_at_least(1)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be at least 1, got 0
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


POSITIVE = int_at_least(1)
SEED = int_at_least(0, maximum=2**32 - 1)  # what numpy and scikit-learn take
N_CLUSTERS = int_at_least(2)


def n_clusters_or_auto(text: str):
    """An argparse type: a number of clusters (at least 2), ``auto``, or a comma-separated
    list of candidates to choose from without labels.

    Example:
        >>> n_clusters_or_auto("auto"), n_clusters_or_auto("8"), n_clusters_or_auto("5,10")
        ('auto', 8, [5, 10])
    """
    if text.strip() == "auto":
        return "auto"
    if "," in text:
        return [N_CLUSTERS(part) for part in text.split(",") if part.strip()]
    return N_CLUSTERS(text)


def _reporter_names():
    from ..reporters import registry

    return registry()


def build_parser() -> argparse.ArgumentParser:
    from .._util.version import __version__

    from . import commands as c

    parser = _Parser(
        prog="actclust", description="Capture activations, find their clusters, compare "
        "them with linear probes.")
    parser.add_argument("--version", action="version", version=f"actclust {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of any failure (also ACTCLUST_DEBUG=1)")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("models", help="list bundled models, or the hook names of one")
    p.add_argument("model", nargs="?",
                   help="a bundled name, a Hugging Face hub id (from the local cache) or "
                   "model directory")
    p.add_argument("--revision", help="a hub id's branch, tag or commit (default main)")
    p.add_argument("--all", action="store_true",
                   help="also list plain module paths, not only TransformerLens names")
    p.set_defaults(func=c.cmd_models)

    p = sub.add_parser("datasets", help="list the bundled datasets")
    p.set_defaults(func=c.cmd_datasets)

    p = sub.add_parser("capture", help="capture activations into a store")
    p.add_argument("--model", required=True, help="minilm, digits-mlp, a Hugging Face hub id "
                   "(org/name, read from the local cache) or model directory")
    p.add_argument("--revision", help="a hub id's branch, tag or commit (default main)")
    p.add_argument("--dataset", required=True,
                   help="a bundled dataset name or a .jsonl/.json/.csv/.parquet file")
    p.add_argument("--text-column", default="text", help="text column of a file (default text)")
    p.add_argument("--layers", required=True,
                   help="hook names or globs, comma-separated (blocks.*.hook_resid_post)")
    p.add_argument("--pool", default="none", choices=["none", "mean", "last", "cls"],
                   help="none: one row per token; else one row per document")
    p.add_argument("--out", required=True, help="store directory to create")
    p.add_argument("--limit", type=POSITIVE, help="only the first N documents")
    p.add_argument("--batch-size", type=POSITIVE, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--max-length", type=POSITIVE, help="truncate texts to this many tokens")
    p.add_argument("--exclude-special", action="store_true",
                   help="leave special tokens ([CLS], [SEP]) out of rows and pools")
    p.add_argument("--shard-rows", type=POSITIVE, default=None, help="rows per shard file")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="finish an interrupted capture")
    group.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--verify", action="store_true",
                   help="with --resume: recompute the checksums of the finished shards first")
    p.add_argument("--checksum", default="xxh3", choices=["xxh3", "sha256"],
                   help="each shard's checksum: xxh3 (fast, the default) or sha256 "
                   "(cryptographic, readable by older actclust)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local: this process; ray: contiguous parts of the documents on Ray "
                   "workers, merged into one store (docs/scale.md)")
    p.add_argument("--address", help="with --backend ray: the Ray cluster to join (default: "
                   "start a local one)")
    p.add_argument("--workers", type=POSITIVE, help="with --backend ray: parts captured at "
                   "once (default: the cluster's GPUs, else its CPUs)")
    p.set_defaults(func=c.cmd_capture)

    p = sub.add_parser("info", help="what a store holds")
    p.add_argument("store")
    p.set_defaults(func=c.cmd_info)

    p = sub.add_parser("verify", help="recompute checksums, check shapes and row alignment")
    p.add_argument("store")
    p.set_defaults(func=c.cmd_verify)

    p = sub.add_parser("fit", help="fit one reporter on one layer and score its clusters")
    p.add_argument("store")
    p.add_argument("--layer", required=True)
    p.add_argument("--reporter", default="kmeans", help="a clustering reporter, optionally "
                   "with settings, e.g. 'gmm(covariance_type=diag)': "
                   + ", ".join(n for n in sorted(_reporter_names()) if n != "pca"))
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="a setting of the reporter (repeatable), e.g. n_init=10")
    p.add_argument("--n-clusters", type=N_CLUSTERS, help="default: classes of the first label")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--labels", help="label columns to score against (default: all)")
    p.add_argument("--out", help="write row -> cluster as parquet")
    p.set_defaults(func=c.cmd_fit)

    p = sub.add_parser("compare", help="reporters vs linear probes over layers and seeds")
    p.add_argument("store")
    p.add_argument("--labels", required=True, help="label columns, comma-separated")
    p.add_argument("--layers", help="layer names or globs (default: all)")
    p.add_argument("--reporters", default="kmeans",
                   help="comma-separated reporters, each a name or name(key=value, ...) "
                   "('' for probes only)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="a setting for every reporter listed (repeatable)")
    p.add_argument("--seeds", type=POSITIVE, default=3, help="seeds per reporter (default 3)")
    p.add_argument("--n-clusters", type=n_clusters_or_auto,
                   help="default: the number of classes; 'auto' or a list such as 5,10,20 "
                   "chooses it by agreement between seeds, without labels")
    p.add_argument("--no-probes", action="store_true", help="skip the linear probes")
    p.add_argument("--probe", choices=("auto", "logistic", "ridge"), default="auto",
                   help="the probe: logistic regression in memory, ridge streamed in bounded "
                        "memory; auto (default) streams only layers too large for memory")
    p.add_argument("--no-label-free", action="store_true",
                   help="skip the label-free scores (self-probe accuracy, cluster balance, "
                   "kNN purity)")
    p.add_argument("--group-column", help="rows sharing it never straddle a probe split")
    p.add_argument("--out", required=True, help="results table (.parquet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=c.cmd_compare)

    p = sub.add_parser("demo", help="the whole pipeline on the bundled MiniLM and topics")
    p.add_argument("--out", default="actclust-demo", help="output directory")
    p.add_argument("--limit", type=POSITIVE, default=None, help="documents to use (default all)")
    p.add_argument("--overwrite", action="store_true",
                   help="capture again even if OUT holds a store with other settings")
    p.set_defaults(func=c.cmd_demo)

    from .import_command import add_command as add_import_command
    add_import_command(sub)

    from ..sweep import add_command as add_sweep_command
    from ..viz.cli import add_command as add_report_command

    add_report_command(sub)
    add_sweep_command(sub)
    from .concepts_command import add_command as add_concepts_command

    add_concepts_command(sub)
    for command in sub.choices.values():  # `actclust fit ... --debug` works too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help=argparse.SUPPRESS)
        if "--quiet" not in command._option_string_actions:
            command.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser
