"""``actclust import``: activations a user already has (``.npy``, ``.safetensors``,
``.pt``, a saved Hugging Face dataset) written as an ordinary store."""

from __future__ import annotations


def add_command(sub) -> None:
    """Register ``actclust import`` on the parser's subcommands."""
    from . import POSITIVE

    p = sub.add_parser(
        "import", help="write activations you already have as a store (.npy, "
        ".safetensors, .pt, a saved Hugging Face dataset)",
        description="Each file gives one or more layers: a .npy file one (named by its "
        "stem), a .safetensors file or a .pt dict one per tensor (named by its key), a "
        "folder saved by datasets one array column. 2-D arrays are (rows, width); 3-D arrays "
        "(documents, positions, width) give one row per token. Files are read a chunk at a "
        "time, so files larger than memory import.")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help=".npy, .safetensors, .pt/.pth files or a dataset folder")
    p.add_argument("--out", required=True, help="store directory to create")
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="name of each layer, in order (repeat once per layer; default: the "
                   "file stem, the tensor keys or the dataset column)")
    p.add_argument("--column", help="a dataset folder's activation column (default: its "
                   "first column of float arrays)")
    p.add_argument("--rows", metavar="ROWS.parquet",
                   help="one row per vector: doc_id, position, token, token labels")
    p.add_argument("--docs", metavar="DOCS.parquet",
                   help="one row per document: doc_id, text, document labels")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="storage dtype (default float32)")
    p.add_argument("--shard-rows", type=POSITIVE, default=None, help="rows per shard file")
    p.add_argument("--model", help="the model's name, recorded in the manifest")
    p.add_argument("--dataset", help="the dataset's name, recorded in the manifest")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    import sys

    from . import EXIT_INTERRUPTED
    from ..store.import_files import import_files
    from ..store.importing import DEFAULT_SHARD_ROWS

    try:
        store = import_files(args.files, args.out, layer_names=args.layer, rows=args.rows,
                             docs=args.docs, column=args.column, dtype=args.dtype,
                             shard_rows=args.shard_rows or DEFAULT_SHARD_ROWS,
                             overwrite=args.overwrite, model=args.model,
                             dataset=args.dataset, progress=not args.quiet)
    except KeyboardInterrupt:  # an import keeps nothing: there is nothing to resume
        print("actclust: interrupted; what the import had written was removed", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"wrote {len(store)} rows x {len(store.layers)} layers to {store.root}")
    return 0
