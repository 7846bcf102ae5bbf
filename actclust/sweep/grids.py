"""The reporters and probes of a sweep: each reporter table's grid expanded into named
points, every point checked against its estimator's declared constraints, and the probe
options checked against :class:`~actclust.probes.LinearProbe`, all before any work.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

from ..errors import ActclustError, closest
from ..reporters.settings import method_name
from .toml_lines import check_type, first_repeat, unknown_keys

REPORTER_KEYS = {"name", "method", "params", "grid"}
PROBE_KEYS = {"enabled", "group_column", "kind"}


@dataclass
class ReporterSpec:
    """One point of a reporter's grid: the registered ``name``, the ``method`` it is called
    in the results table, and the parameters the user set.

    Example:
        >>> ReporterSpec("kmeans", "kmeans", {"n_init": 3}).estimator().n_init
        3
    """

    name: str
    method: str
    params: dict = field(default_factory=dict)

    def estimator(self):
        """An unfitted estimator with these parameters."""
        from ..reporters import get_reporter

        return get_reporter(self.name)(**self.params)


def check_reporters(entries, where) -> list:
    """The ``reporters`` of a sweep (names or tables), each grid expanded: one
    :class:`ReporterSpec` per point, its values checked, its method name unique."""
    from ..reporters import registry

    if not isinstance(entries, list):
        raise ActclustError(f"{where(None, 'reporters')}: reporters must be a list of names "
                            "or [[reporters]] tables")
    known = registry()
    out, methods = [], {}
    for index, entry in enumerate(entries):
        entry = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or "name" not in entry:
            raise ActclustError(f"{where('reporters', 'name', index)}: reporter {index + 1} "
                                "needs a name (a registered reporter such as \"kmeans\")")
        unknown_keys(entry, REPORTER_KEYS, where, "reporters", index)
        name = str(entry["name"]).strip().lower()
        if name not in known:
            raise ActclustError(f"{where('reporters', 'name', index)}: unknown reporter "
                                f"{entry['name']!r}; {closest(name, known)}")
        cls = known[name]
        valid = set(cls().get_params(deep=False))
        params = check_type(entry.get("params", {}), dict, where, "reporters", "params",
                       "a table of parameters")
        grid = check_type(entry.get("grid", {}), dict, where, "reporters", "grid",
                     "a table of parameter lists")
        for key in list(params) + list(grid):
            if key not in valid:
                raise ActclustError(f"{where('reporters', key, index)}: {name} has no "
                                    f"parameter {key!r}; {closest(key, sorted(valid))}")
            if key == "random_state":
                raise ActclustError(f"{where('reporters', key, index)}: random_state is set "
                                    "from seeds; list the seeds in `seeds` instead")
        both = set(params) & set(grid)
        if both:
            key = sorted(both)[0]
            raise ActclustError(f"{where('reporters', key, index)}: {name}: {key!r} is both "
                                "in params and in grid")
        for key, values in grid.items():
            if not isinstance(values, list):
                raise ActclustError(f"{where('reporters', key, index)}: grid.{key} must be a "
                                    f"list of values, got {values!r}")
            if not values:
                raise ActclustError(f"{where('reporters', key, index)}: grid.{key} is empty: "
                                    "a grid needs at least one value")
            twice = first_repeat(values)
            if twice is not None:
                raise ActclustError(f"{where('reporters', key, index)}: grid.{key} lists "
                                    f"{twice!r} twice")
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            point = dict(zip(keys, combo))
            method = entry.get("method", name)
            if point:
                method = method_name(method, point)
            spec = ReporterSpec(name, method, {**params, **point})
            _validate_values(spec, where, index)
            if method in methods:
                raise ActclustError(f"{where('reporters', 'name', index)}: two reporters are "
                                    f"both called {method!r} in the table; give one a "
                                    "method = \"...\" name")
            methods[method] = spec
            out.append(spec)
    return out


def _validate_values(spec: ReporterSpec, where, index) -> None:
    """Check parameter values against the estimator's declared constraints now, not mid-run."""
    est = spec.estimator()
    if "n_clusters" in est.get_params(deep=False) and "n_clusters" not in spec.params:
        est.set_params(n_clusters=2)  # set per label at run time; any valid value checks
    validate = getattr(est, "_validate_params", None)
    if validate is None:
        return
    try:
        validate()
    except (ValueError, TypeError) as err:
        key = next((k for k in spec.params if f"'{k}'" in str(err)), "name")
        raise ActclustError(f"{where('reporters', key, index)}: {spec.method}: "
                            f"{err}") from None


def check_probes(table, where) -> Optional[dict]:
    """The ``[probes]`` table as ``{"kind", "params", "group_column"}``, or None when
    disabled. ``kind`` is ``auto`` (logistic in memory, ridge streamed for layers too
    large for it), ``logistic`` or ``ridge``; settings without a kind pick the probe
    they belong to."""
    from ..probes import PROBE_KINDS, LinearProbe, RidgeProbe

    if table is False:
        return None
    check_type(table, dict, where, None, "probes", "a table ([probes])")
    kind = table.get("kind", "auto")
    if kind not in PROBE_KINDS:
        raise ActclustError(f"{where('probes', 'kind')}: probes.kind must be one of "
                            f"{', '.join(PROBE_KINDS)}, got {kind!r}")
    settings = {"logistic": LinearProbe, "ridge": RidgeProbe}
    valid = set().union(*(set(c().get_params(deep=False)) for c in settings.values())) \
        if kind == "auto" else set(settings[kind]().get_params(deep=False))
    valid -= {"random_state"}
    if "random_state" in table:
        raise ActclustError(f"{where('probes', 'random_state')}: random_state is set from "
                            "seeds; list the seeds in `seeds` instead")
    unknown_keys(table, PROBE_KEYS | valid, where, "probes")
    if not table.get("enabled", True):
        return None
    params = {k: v for k, v in table.items() if k in valid}
    if kind == "auto" and params:
        if "kind" in table:
            raise ActclustError(f"{where('probes', sorted(params)[0])}: probe settings need "
                                "a fixed probe: set kind = \"logistic\" or \"ridge\"")
        # Settings without a kind name their probe (sweep files from before kinds set
        # the logistic probe's).
        kind = "ridge" if set(params) & (set(RidgeProbe().get_params()) -
                                         set(LinearProbe().get_params())) else "logistic"
        unknown_keys(table, PROBE_KEYS | set(settings[kind]().get_params(deep=False)),
                     where, "probes")
    for name in ("Cs", "alphas"):
        if name in params:
            if not isinstance(params[name], list) or not params[name]:
                raise ActclustError(f"{where('probes', name)}: probes.{name} must be a "
                                    "non-empty list of numbers")
            params[name] = tuple(params[name])
    try:
        if kind != "auto":
            settings[kind](**params)._validate_params()
    except (ValueError, TypeError) as err:
        key = next((k for k in params if f"'{k}'" in str(err)), "enabled")
        raise ActclustError(f"{where('probes', key)}: probes: {err}") from None
    group = table.get("group_column")
    if group is not None:
        check_type(group, str, where, "probes", "group_column", "a column name")
    return {"kind": kind, "params": params, "group_column": group}
