"""Reporter settings as text (actclust.reporters.settings), in compare and on the CLI."""

import pytest

from actclust.compare import reporter_for
from actclust.errors import ActclustError
from actclust.reporters import GMM, SCAN, KMeans
from actclust.reporters.settings import (method_name, parse_param, parse_reporter,
                                         reporter_from_text)


@pytest.mark.parametrize("text, expected", [
    ("kmeans", ("kmeans", {})),
    ("gmm(covariance_type=diag)", ("gmm", {"covariance_type": "diag"})),
    ('gmm(covariance_type="diag", n_init=3)', ("gmm", {"covariance_type": "diag",
                                                       "n_init": 3})),
    ("scan(hidden=(64, 32), self_label=True, lr=1e-3)",
     ("scan", {"hidden": (64, 32), "self_label": True, "lr": 1e-3})),
    ("kmeans(spherical=false, max_iter=None)", ("kmeans", {"spherical": False,
                                                           "max_iter": None})),
])
def test_parse(text, expected):
    assert parse_reporter(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("gmm(", "not NAME or NAME"), ("gmm(3)", "by keyword"),
    ("gmm(**x)", r"\*\* is not a setting"), ("gmm(a=open('x'))", "value of a"),
    ("os.system('x')", "not NAME or NAME"), ("kmean", "unknown reporter 'kmean'"),
    ("gmm(covariance_type=round)", "gmm\\(covariance_type=round\\): The 'covariance_type'"),
    ("kmeans(colour=red)", "KMeans has no setting colour"),
])
def test_bad_text_is_one_line_error(text, message):
    with pytest.raises(ActclustError, match=message) as err:
        reporter_from_text(text)
    assert "\n" not in str(err.value)


def test_names_round_trip_and_match_the_sweep_format():
    name, est = reporter_from_text("gmm(covariance_type=diag)", n_init=2)
    assert name == "gmm(covariance_type=diag, n_init=2)"
    assert isinstance(est, GMM) and est.covariance_type == "diag" and est.n_init == 2
    assert parse_reporter(name) == ("gmm", {"covariance_type": "diag", "n_init": 2})
    assert method_name("kmeans", {"spherical": True}) == "kmeans(spherical=true)"
    assert parse_param("hidden=(8,)") == ("hidden", (8,))
    with pytest.raises(ActclustError, match="not key=value"):
        parse_param("hidden")


def test_compare_names_settings_and_instances():
    assert reporter_for(KMeans(spherical=True))[0] == "kmeans(spherical=true)"
    # n_clusters and the seed are set per fit: they do not name a method
    assert reporter_for(KMeans(n_clusters=4, random_state=1))[0] == "kmeans"
    assert reporter_for(SCAN(hidden=(64,)))[0] == "scan(hidden=(64,))"
    assert reporter_for("gmm(covariance_type=diag)", name="gmm-diag")[0] == "gmm-diag"
