"""Kill a capture at arbitrary moments (start-up, mid-shard, commit, finalize), resume it, and
get the uninterrupted result. A small array model keeps each run short."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from actclust import ActivationStore
from actclust.store import verify_store

SCRIPT = textwrap.dedent("""
    import sys, time, numpy as np, torch
    import actclust

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a = torch.nn.Linear(16, 32)
            self.b = torch.nn.Linear(32, 8)

        def forward(self, x):
            time.sleep(0.01)  # stretch the run so kills land everywhere
            return self.b(torch.relu(self.a(x)))

    X = np.random.default_rng(0).normal(size=(600, 16)).astype(np.float32)
    actclust.capture(Slow(), X, ["a", "b"], out=sys.argv[1], batch_size=10, shard_rows=50,
                     labels={"y": np.arange(600) % 7}, progress=False,
                     resume=len(sys.argv) > 2)
""")


def run(script, out, *extra):
    return subprocess.Popen([sys.executable, str(script), str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_at_random_moments_then_resume(tmp_path):
    script = tmp_path / "capture.py"
    script.write_text(SCRIPT)
    reference = run(script, tmp_path / "ref")
    _, err = reference.communicate(timeout=120)
    assert reference.returncode == 0, err
    ref = ActivationStore(tmp_path / "ref")
    out = tmp_path / "killed"
    rng = np.random.default_rng(1)
    kills = 0
    for delay in sorted(rng.uniform(0.2, 3.0, size=6)):
        proc = run(script, out, "--resume")
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate()  # reaps it and closes its pipes
    assert kills >= 3
    final = run(script, out, "--resume")
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert verify_store(out) == []
    store = ActivationStore(out)
    pd.testing.assert_frame_equal(store.rows.to_pandas(), ref.rows.to_pandas())
    for layer in ("a", "b"):
        np.testing.assert_array_equal(store.layer(layer).to_numpy(), ref.layer(layer).to_numpy())
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))
