"""The sweep file: TOML (or an equal dict) checked in full before any work starts.

Every key is known in advance, so a typo is an error that names the key and its line
rather than a setting silently ignored. ``docs/sweeps.md`` documents each key. The
reporter and probe tables are checked by :mod:`~actclust.sweep.grids`; the line of a key
is found by :mod:`~actclust.sweep.toml_lines`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ActclustError
from .grids import check_probes, check_reporters
from .toml_lines import Where, check_type, first_repeat, toml_parser, unknown_keys

EXAMPLE = '''\
# An actclust sweep: every (layer x reporter x seed) cell and a linear probe per layer and
# label, in one results table. Run it with `actclust sweep sweep.toml`; relative paths are
# read from this file's folder.

name = "topics-layers"     # names the sweep; its output folder holds only this sweep
out = "topics-sweep"       # output folder: store/, cells/, results.parquet, report.html
labels = ["topic"]         # label columns to score against (default: every label column)
seeds = 3                  # seeds 0, 1, 2 per reporter and probe; or a list: [0, 7, 42]

[data]
model = "minilm"           # bundled name or Hugging Face directory; several: models = [...]
dataset = "topics"         # bundled name or a .jsonl/.json/.csv/.parquet file
layers = ["blocks.*.hook_out"]  # hook names or globs
pool = "mean"              # none (one row per token) | mean | last | cls
limit = 400                # only the first 400 documents (default: all)
# store = "topics-store"   # use or fill this store instead of <out>/store

# One table per reporter. `params` are fixed; each list in `grid` is swept, and every
# combination becomes its own method in the table, e.g. "gmm(covariance_type=diag)".
# n_clusters defaults to the number of classes of each label.
[[reporters]]
name = "kmeans"
params = { n_init = 3 }

[[reporters]]
name = "gmm"
grid = { covariance_type = ["diag", "spherical"] }

[[reporters]]
name = "agglomerative"

[probes]                   # a linear probe (with a control task) per layer, label and seed
Cs = [0.1, 1.0, 10.0]      # strengths to cross-validate (any LinearProbe option but
                           # random_state, which comes from seeds)
# enabled = false          # no probes
# group_column = "template"  # rows sharing it never straddle a train/test split

[run]
backend = "local"          # local | ray (pip install actclust[ray])
jobs = 1                   # cells at once on this machine (--jobs)
# address = "auto"         # Ray cluster to join (default: start a local one)
# gpus_per_cell = 1        # GPUs a Ray task asks for when its reporter trains on a GPU
# report = false           # no report.html at the end
'''

TOP_KEYS = {"name", "out", "labels", "seeds", "data", "reporters", "probes", "run"}
DATA_KEYS = {"model", "models", "dataset", "text_column", "layers", "pool", "limit",
             "max_length", "dtype", "batch_size", "device", "exclude_special", "store"}
CAPTURE_KEYS = DATA_KEYS - {"model", "models", "dataset", "layers", "store"}
RUN_KEYS = {"backend", "jobs", "address", "gpus_per_cell", "report"}
BACKENDS = ("local", "ray")


@dataclass
class SweepSpec:
    """A checked sweep: what to capture, which cells to run, where the results go.

    Build it with :func:`load_sweep`; fields mirror the file's keys (``docs/sweeps.md``).

    Example:
        >>> spec = load_sweep({"out": "o", "data": {"store": "s"}, "reporters": ["kmeans"]})
        >>> spec.seeds, [r.method for r in spec.reporters], spec.probes is not None
        ([0, 1, 2], ['kmeans'], True)
    """

    name: str
    out: Path
    models: list  # as the file names them (the table's model column)
    model_paths: dict  # each model -> what is loaded: a bundled name or a directory
    dataset: Optional[str]
    layers: object
    store: Optional[Path]
    capture: dict
    labels: Optional[list]
    seeds: list
    reporters: list  # of ReporterSpec, one per grid point
    probes: Optional[dict]
    run: dict
    source: str = ""


def load_sweep(source, base: Optional[Path] = None) -> SweepSpec:
    """Read and check a sweep: a TOML file path, TOML text, a dict, or a :class:`SweepSpec`.

    Relative paths (``out``, ``data.store``, a dataset file, a model directory) are taken
    from the TOML file's folder, else from ``base`` (default: the current directory);
    bundled dataset and model names are kept as they are. Unknown keys, empty grids,
    repeated values and malformed values raise :class:`~actclust.errors.ActclustError`
    naming the key and, for TOML, its line.

    Example:
        >>> spec = load_sweep('out = "o"\\n[data]\\nstore = "s"\\n[probes]\\nenabled = false\\n'
        ...                   '[[reporters]]\\nname = "gmm"\\n'
        ...                   'grid = { covariance_type = ["diag", "full"] }')
        >>> [r.method for r in spec.reporters]
        ['gmm(covariance_type=diag)', 'gmm(covariance_type=full)']
        >>> load_sweep({"out": "o", "data": {"store": "s"}, "colour": 1})
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: sweep: unknown key 'colour'; closest valid: ...
    """
    if isinstance(source, SweepSpec):
        return source
    text, origin, default_name = "", "sweep", "sweep"
    if isinstance(source, dict):
        raw = source
    else:
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                        and "=" not in source):
            path = Path(source).expanduser()
            if not path.is_file():
                raise ActclustError(f"sweep file {path} does not exist "
                                    "(`actclust sweep --print-example` prints one)")
            text, origin, default_name = path.read_text(), str(path), path.stem
            base = path.resolve().parent
        else:
            text = source
        tomllib = toml_parser()
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ActclustError(f"{origin}: not valid TOML: {err}") from None
    base = Path(base) if base is not None else Path.cwd()
    where = Where(text, origin)
    return _check(raw, where, base, default_name, text)


def _path(value, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _check(raw: dict, where: Where, base: Path, default_name: str, text: str) -> SweepSpec:
    unknown_keys(raw, TOP_KEYS, where, None)
    name = check_type(raw.get("name", default_name), str, where, None, "name", "a string")
    if "out" not in raw:
        raise ActclustError(f"{where.origin}: no output folder: add out = \"...\"")
    out = _path(check_type(raw["out"], str, where, None, "out", "a folder path"), base)
    data = _check_data(raw.get("data", {}), where, base)
    labels = _check_labels(raw.get("labels"), where)
    seeds = _check_seeds(raw.get("seeds", 3), where)
    reporters = check_reporters(raw.get("reporters", []), where)
    probes = check_probes(raw.get("probes", {}), where)
    if not reporters and probes is None:
        raise ActclustError(f"{where.origin}: nothing to run: no reporters and probes "
                            "disabled")
    run = _check_run_table(raw.get("run", {}), where)
    return SweepSpec(name=name, out=out, labels=labels, seeds=seeds, reporters=reporters,
                     probes=probes, run=run, source=text, **data)


def _check_data(data, where, base: Path) -> dict:
    """The [data] table: the model(s) and dataset to capture, or the store to use."""
    data = check_type(data, dict, where, None, "data", "a table ([data])")
    unknown_keys(data, DATA_KEYS, where, "data")
    if "model" in data and "models" in data:
        raise ActclustError(f"{where('data', 'models')}: give model or models, not both")
    models = data.get("models", [data["model"]] if "model" in data else [])
    models = [models] if isinstance(models, str) else models
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ActclustError(f"{where('data', 'models')}: data.models must be a list of "
                            "model names or directories")
    if "models" in data and not models:
        raise ActclustError(f"{where('data', 'models')}: data.models is empty")
    if len(set(models)) != len(models):
        raise ActclustError(f"{where('data', 'models')}: data.models lists a model twice")
    store = _path(check_type(data["store"], str, where, "data", "store", "a folder path"), base) \
        if "store" in data else None
    dataset = data.get("dataset")
    model_paths = {}
    if models:
        if dataset is None:
            raise ActclustError(f"{where('data', 'model')}: a model needs a dataset: add "
                                "dataset = \"topics\" (or a file) under [data]")
        check_type(dataset, str, where, "data", "dataset", "a dataset name or file")
        dataset = resolve_dataset(dataset, base)
        model_paths = {m: resolve_model(m, base) for m in models}
        if "layers" not in data:
            raise ActclustError(f"{where('data', 'model')}: which layers? add layers = "
                                "[\"blocks.*.hook_out\"] under [data]")
        if store is not None and len(models) > 1:
            raise ActclustError(f"{where('data', 'store')}: data.store names one store, but "
                                f"{len(models)} models are swept; leave it out (each model "
                                "gets <out>/stores/<model>)")
    else:
        if store is None:
            raise ActclustError(f"{where.origin}: nothing to sweep over: give [data] model "
                                "and dataset (to capture), or store (an existing store)")
        extra = [k for k in data if k in CAPTURE_KEYS or k == "dataset"]
        if extra:
            raise ActclustError(f"{where('data', extra[0])}: data.{extra[0]} is a capture "
                                "setting, but no model is given: the store is used as it is")
    layers = data.get("layers")
    if layers is not None:
        if isinstance(layers, str):
            layers = [p.strip() for p in layers.split(",") if p.strip()]
        if not isinstance(layers, list) or not layers or \
                not all(isinstance(p, str) and p for p in layers):
            raise ActclustError(f"{where('data', 'layers')}: data.layers must be a non-empty "
                                "list of hook names or globs")
    capture = {k: data[k] for k in CAPTURE_KEYS if k in data}
    _check_capture(capture, where)
    return {"models": models, "model_paths": model_paths, "dataset": dataset,
            "layers": layers, "store": store, "capture": capture}


def resolve_dataset(dataset: str, base: Path) -> str:
    """A bundled dataset name as it is; anything else is a file, read from ``base``.

    A folder that happens to share a bundled name (say, an output folder ``topics``) never
    hides the bundled dataset.

    Example:
        >>> resolve_dataset("topics", Path("/sweeps"))
        'topics'
        >>> resolve_dataset("mine.csv", Path("/sweeps"))
        '/sweeps/mine.csv'
    """
    from ..data import available

    if dataset.strip().lower() in available():
        return dataset
    return str(_path(dataset, base))


def resolve_model(model: str, base: Path) -> str:
    """A bundled model name as it is; anything else is a model directory, read from
    ``base``.

    Example:
        >>> resolve_model("minilm", Path("/sweeps")), resolve_model("gpt2", Path("/sweeps"))
        ('minilm', '/sweeps/gpt2')
    """
    from ..models import BUNDLED

    return model if model in BUNDLED else str(_path(model, base))


def _check_labels(labels, where) -> Optional[list]:
    if labels is None:
        return None
    labels = [labels] if isinstance(labels, str) else labels
    if not isinstance(labels, list) or not labels or \
            not all(isinstance(x, str) and x for x in labels):
        raise ActclustError(f"{where(None, 'labels')}: labels must be a column name or a "
                            "non-empty list of them")
    twice = first_repeat(labels)
    if twice is not None:
        raise ActclustError(f"{where(None, 'labels')}: labels lists {twice!r} twice")
    return labels


SEED_LIMIT = 2 ** 32  # numpy and torch seeds are unsigned 32-bit integers


def _check_seeds(seeds, where) -> list:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ActclustError(f"{where(None, 'seeds')}: seeds = {seeds}: need at least 1")
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or \
            not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ActclustError(f"{where(None, 'seeds')}: seeds must be a count (3) or a "
                            "non-empty list of integers")
    bad = [s for s in seeds if not 0 <= s < SEED_LIMIT]
    if bad:
        raise ActclustError(f"{where(None, 'seeds')}: seed {bad[0]} is out of range: seeds "
                            "are integers from 0 to 2**32 - 1")
    twice = first_repeat(seeds)
    if twice is not None:
        raise ActclustError(f"{where(None, 'seeds')}: seeds lists {twice} twice")
    return seeds


def _check_run_table(run, where) -> dict:
    run = check_type(run, dict, where, None, "run", "a table ([run])")
    unknown_keys(run, RUN_KEYS, where, "run")
    run = {"backend": "local", "jobs": 1, "address": None, "gpus_per_cell": 1.0,
           "report": True, **run}
    check_type(run["report"], bool, where, "run", "report", "true/false")
    gpus = run["gpus_per_cell"]
    if not isinstance(gpus, (int, float)) or isinstance(gpus, bool) or gpus <= 0:
        raise ActclustError(f"{where('run', 'gpus_per_cell')}: run.gpus_per_cell must be a "
                            "number > 0")
    if run["address"] is not None:
        check_type(run["address"], str, where, "run", "address", "a Ray address")
    check_run(run["backend"], run["jobs"],
              backend_name=f"{where('run', 'backend')}: run.backend",
              jobs_name=f"{where('run', 'jobs')}: run.jobs")
    return run


def check_run(backend=None, jobs=None, backend_name: str = "backend",
              jobs_name: str = "jobs") -> None:
    """The one check of a backend and a job count (from the file, ``run_sweep`` or the
    command line); ``None`` means not given.

    Example:
        >>> check_run("local", 2)
        >>> check_run(jobs=0, jobs_name="--jobs")
        Traceback (most recent call last):
        ...
        actclust.errors.ActclustError: --jobs must be an integer >= 1, got 0
    """
    if backend is not None and backend not in BACKENDS:
        raise ActclustError(f"{backend_name} must be one of {', '.join(BACKENDS)}, "
                            f"got {backend!r}")
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ActclustError(f"{jobs_name} must be an integer >= 1, got {jobs!r}")


def _check_capture(capture: dict, where) -> None:
    from ..capture import POOLS
    from ..store.format import STORAGE_DTYPES

    if "pool" in capture and capture["pool"] not in POOLS:
        raise ActclustError(f"{where('data', 'pool')}: data.pool must be one of "
                            f"{', '.join(POOLS)}, got {capture['pool']!r}")
    if "dtype" in capture and capture["dtype"] not in STORAGE_DTYPES:
        raise ActclustError(f"{where('data', 'dtype')}: data.dtype must be one of "
                            f"{', '.join(STORAGE_DTYPES)}, got {capture['dtype']!r}")
    for key in ("limit", "max_length", "batch_size"):
        value = capture.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise ActclustError(f"{where('data', key)}: data.{key} must be an integer >= 1")
    for key in ("text_column", "device"):
        if key in capture:
            check_type(capture[key], str, where, "data", key, "a string")
    if "exclude_special" in capture:
        check_type(capture["exclude_special"], bool, where, "data", "exclude_special", "true/false")
