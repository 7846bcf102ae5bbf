"""Where a sweep's cells run: one after another in this process, in worker processes on
this machine (loky's reusable executor), or as tasks on a Ray cluster.

Each backend takes the pending cells (plain data naming their store by path) and yields
each cell's result as it finishes: ``{"key", "ok", "seconds", "error"}``. The workers write
each cell's file themselves, so a result reaching this process is already on disk. The
parallel backends start the longest cells first; a worker that dies is recorded as a
failed cell and the sweep goes on.
"""

from __future__ import annotations

import os
from collections import deque
from contextlib import contextmanager
from typing import Iterator

from ..errors import ActclustError
from . import cells as cellmod

RAY_HINT = "the Ray backend needs Ray: pip install 'actclust[ray]'"


def cost(cell: dict) -> int:
    """A rough rank of a cell's run time, to start the longest first (a long cell started
    last would leave the other workers idle at the end)."""
    if cell["kind"] != "reporter":
        return 1  # a probe: between cheap reporters (0) and quadratic ones (2)
    from ..reporters import capabilities

    return capabilities(cellmod.reporter_class(cell)).cost_rank


def longest_first(cells: list) -> list:
    """The cells ordered by :func:`cost`, highest first."""
    return sorted(cells, key=cost, reverse=True)  # stable: the sweep's order within a rank


def needs_gpu(cell: dict, cluster_gpus: float) -> bool:
    """Whether a Ray task for ``cell`` should ask for a GPU: its reporter is told to use
    CUDA, or trains on ``device="auto"`` on a cluster that has GPUs."""
    if cell["kind"] != "reporter":
        return False
    from ..reporters import capabilities

    device = str(cell["full_params"].get("device", ""))
    if device.startswith("cuda"):
        return True
    return device == "auto" and cluster_gpus > 0 and \
        capabilities(cellmod.reporter_class(cell)).gpu


def in_process(pending, cells_dir, stores, started) -> Iterator[dict]:
    """One cell after another in this process, with the store already open (``stores``
    maps a store's path to it) and every core's threads (the thread policy of
    ``jobs = 1``), except for the OpenBLAS pools of numpy and scipy (see
    :func:`one_thread_per_pthreads_blas`)."""
    with one_thread_per_pthreads_blas():
        for cell in pending:
            started(cell)
            yield cellmod.run_cell(cell, str(cells_dir), store=stores.get(cell["store"]))


@contextmanager
def one_thread_per_pthreads_blas():
    """Within the block, the pthreads OpenBLAS pools that numpy and scipy each load run one
    thread; OpenMP ones (faiss, torch) keep theirs.

    With two such pools of several threads in one process, each pool's idle threads spin
    while the other works: the self-probe of a cell (L-BFGS, alternating numpy's and
    scipy's BLAS) took 7 s of CPU on 2 cores instead of 1 s on one thread, and a cell ran
    3-4x slower than with one thread.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # a scikit-learn dependency; without it, leave the threads alone
        yield
        return
    pools = ThreadpoolController().select(internal_api="openblas")
    pools.lib_controllers = [lib for lib in pools.lib_controllers
                             if getattr(lib, "threading_layer", None) == "pthreads"]
    with pools.limit(limits=1):
        yield


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def worker_threads(jobs: int) -> int:
    """The thread policy: ``jobs = 1`` runs in this process with every core's threads;
    with more jobs, each worker gets the cores shared out, at least one thread.

    Example:
        >>> worker_threads(10 ** 6)
        1
    """
    return max(1, cores() // jobs)


WORKER_DIED = ("its worker process died twice running it (killed, or out of memory?); "
               "rerun with --resume, perhaps with fewer --jobs")


class CellPool:
    """``jobs`` worker processes (loky's reusable executor) that run cells one by one.

    Workers receive a cell's description, open the store by path, memory-mapped, and
    write the cell's file themselves. A worker that dies (killed, out of memory) breaks
    the pool: the cells it was running are run once more, each alone, in a fresh pool, and
    a cell that kills its worker again is recorded as failed; the sweep goes on.
    """

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.threads = worker_threads(jobs)

    def executor(self):
        from joblib.externals.loky import get_reusable_executor

        env = {variable: str(self.threads) for variable in cellmod.THREAD_VARIABLES}
        # The initializer too: loky passes ``env`` only with its own start method, and a
        # worker must not start its first cell with every core's threads.
        return get_reusable_executor(max_workers=self.jobs, timeout=300, env=env,
                                     initializer=cellmod.limit_threads,
                                     initargs=(self.threads,))

    def warm(self) -> None:
        executor = self.executor()
        for _ in range(self.jobs):
            executor.submit(cellmod.warm_up, self.threads)

    def run(self, pending, cells_dir, started) -> Iterator[dict]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        queue, suspects = deque(longest_first(pending)), deque()
        running: dict = {}  # future -> (cell, ran alone)
        executor = self.executor()

        def submit(cell, alone):
            started(cell)
            future = executor.submit(cellmod.run_cell, cell, str(cells_dir), self.threads)
            running[future] = (cell, alone)

        try:
            while queue or suspects or running:
                if suspects and not running:
                    submit(suspects.popleft(), True)
                elif not suspects:
                    while queue and len(running) < self.jobs:
                        submit(queue.popleft(), False)
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                broke = any(isinstance(f.exception(), BrokenProcessPool) for f in done)
                if broke:
                    done, _ = wait(list(running))  # the others fail with the pool, or finish
                for future in done:
                    cell, alone = running.pop(future)
                    err = future.exception()
                    if err is None:
                        yield future.result()
                    elif isinstance(err, BrokenProcessPool) and not alone:
                        suspects.append(cell)
                    else:
                        message = WORKER_DIED if isinstance(err, BrokenProcessPool) else \
                            f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
                        cellmod.write_failure(cells_dir, cell, message)
                        yield {"key": cell["key"], "ok": False, "seconds": 0.0,
                               "error": message}
                if broke:
                    executor = self.executor()  # a fresh pool replaces the broken one
        finally:
            for future in running:
                future.cancel()


def import_ray():
    """The ``ray`` module, or an error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ActclustError(RAY_HINT) from None
    return ray


def ray_cells(pending, address, gpus_per_cell, cells_dir) -> Iterator[dict]:
    """The cells as Ray tasks on the cluster at ``address`` (a local one when None,
    started here and shut down at the end); a task whose worker dies fails its cell."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        task = ray.remote(cellmod.run_cell)
        refs = {}
        for cell in longest_first(pending):
            gpus = gpus_per_cell if needs_gpu(cell, cluster_gpus) else 0
            # One CPU per task, so one thread each.
            ref = task.options(num_cpus=1, num_gpus=gpus, max_retries=1).remote(
                cell, str(cells_dir), 1)
            refs[ref] = cell
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            cell = refs.pop(ready[0])
            try:
                yield ray.get(ready[0])
            except Exception as err:  # the worker itself died (killed for memory)
                message = f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
                cellmod.write_failure(cells_dir, cell, message)
                yield {"key": cell["key"], "ok": False, "seconds": 0.0, "error": message}
    finally:
        if started:
            ray.shutdown()
