"""The wheel: built from the package alone, installed into a fresh virtual environment
without the source tree, it runs the demo."""

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _run(args, cwd, **kwargs):
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          **kwargs)
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Built from a copy holding only what the wheel is made of, so the build writes
    nothing into the working tree."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "actclust", src / "actclust",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend already installed here, no download
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out], src)
    wheels = list(out.glob("actclust-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_the_package_its_entry_point_and_extras(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "actclust").rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))
    assert not any(n.startswith(("tests/", "benchmarks/", "notebooks/", "docs/"))
                   for n in names)
    assert "actclust = actclust.cli:main" in entry
    for extra in ("ray", "notebook", "docs"):
        assert f"Provides-Extra: {extra}" in meta


def test_wheel_installs_into_a_fresh_environment_and_runs_the_demo(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python = venv / "bin" / "python"
    # The dependencies (torch, transformers, the bundled model) come from this environment
    # by a plain path line: it does not run this environment's .pth files, so the editable
    # install of the source tree stays out of sight.
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   tmp_path).strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "deps.pth").write_text("\n".join(deps) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
          "--no-index", wheel], tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    where = _run([python, "-c", "import actclust; print(actclust.__file__)"], tmp_path, env=env)
    assert Path(where.strip()).is_relative_to(venv), where
    out = _run([venv / "bin" / "actclust", "demo", "--limit", "200", "--out", tmp_path / "demo",
                "--quiet"], tmp_path, env=env, timeout=900)
    assert (tmp_path / "demo" / "report.html").stat().st_size > 10_000, out
