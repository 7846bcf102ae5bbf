"""The sweep's thread policy: one thread per worker when workers share the cores, and no
two spinning OpenBLAS pools in the process that runs cells itself."""

import os

import numpy as np
import pytest
import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS next to numpy's)
from threadpoolctl import threadpool_info

from actclust.sweep import cells as cellmod
from actclust.sweep.backends import CellPool, one_thread_per_pthreads_blas, worker_threads


def pthreads_blas():
    return {i["filepath"]: i["num_threads"] for i in threadpool_info()
            if i["internal_api"] == "openblas" and i.get("threading_layer") == "pthreads"}


def environment(name):
    return os.environ.get(name)


def numpy_blas_threads():
    np.ones((64, 64)) @ np.ones((64, 64))  # numpy's BLAS is loaded and used
    return {i["internal_api"]: i["num_threads"] for i in threadpool_info()}


def test_in_process_cells_run_one_thread_per_pthreads_blas_pool():
    before = pthreads_blas()
    if not before:
        pytest.skip("no pthreads OpenBLAS loaded here")
    with one_thread_per_pthreads_blas():
        assert set(pthreads_blas().values()) == {1}
        others = [i for i in threadpool_info() if i.get("threading_layer") != "pthreads"]
    assert pthreads_blas() == before  # restored afterwards
    assert all(i["num_threads"] >= 1 for i in others)


def test_workers_get_the_cores_shared_out():
    assert worker_threads(2) == max(1, cellmod_cores() // 2)
    pool = CellPool(2)
    executor = pool.executor()
    # Before any cell ran: the worker initializer set the environment and the pools.
    env = executor.submit(environment, "OMP_NUM_THREADS").result()
    blas = executor.submit(environment, "OPENBLAS_NUM_THREADS").result()
    assert env == blas == str(worker_threads(2))
    threads = executor.submit(numpy_blas_threads).result()
    assert threads["openblas"] == worker_threads(2)


def test_limit_threads_sets_every_pool_and_the_environment(monkeypatch):
    for variable in cellmod.THREAD_VARIABLES:
        monkeypatch.setenv(variable, "2")
    monkeypatch.setattr(cellmod, "_THREADS_SET", [])
    before = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    try:
        cellmod.limit_threads(1)
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert {i["num_threads"] for i in threadpool_info()} == {1}
    finally:
        from threadpoolctl import threadpool_limits

        for path, n in before.items():
            threadpool_limits({path: n})


def cellmod_cores():
    from actclust.sweep.backends import cores

    return cores()
