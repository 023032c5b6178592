"""Independent jobs on several CPU cores: `map_in_processes` (order kept, a tqdm bar, one process per core).

The world build uses it for synthesis, unit encoding and evaluator training, whose jobs share no state.
Workers are *spawned* (not forked): a fork after torch or OpenMP started threads can deadlock, and
libespeak-ng keeps process-wide state. Each worker runs single-threaded (torch, BLAS), so `workers`
processes use `workers` cores. ``workers <= 1`` runs the jobs in this process, in order, with no pool.
Results must not depend on `workers`: give every job its own seed.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Processes to use when the caller does not say: the cores this process may run on, at most 2.

    Two is what the kit's cpu world is sized for; more cores rarely help its few long jobs.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:      # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


_LIMITS: list[Any] = []      # keeps the worker's thread limits alive


def _single_threaded() -> None:
    """Worker initialiser: one OpenMP / BLAS thread per process.

    Libraries imported later read the environment; torch, numpy or BLAS already imported by the caller's
    main module (which spawned workers re-import) are limited directly. Two OpenMP threads per worker on a
    2-core machine spin in their barriers: a recogniser then costs four times the CPU time.
    """
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    from threadpoolctl import threadpool_limits

    _LIMITS.append(threadpool_limits(limits=1))


def map_in_processes(fn: Callable[[T], R], jobs: Sequence[T], *, workers: int, desc: str = "",
                     progress: bool = True) -> list[R]:
    """``[fn(job) for job in jobs]`` on ``workers`` spawned processes; jobs start in the order given.

    ``fn`` must be a module-level function and jobs picklable. Put the longest jobs first: each free worker
    takes the next job, so that order is a greedy longest-first schedule.
    """
    if workers < 1:
        raise ValueError(f"workers={workers}: use at least 1 process")
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, leave=False, mininterval=1.0)
    if workers == 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(fn(job))
            bar.update()
        bar.close()
        return results
    results_by_index: dict[int, Any] = {}
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_single_threaded)
    try:
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            results_by_index[futures[future]] = future.result()      # a job's error is raised here
            bar.update()
    except BrokenProcessPool:
        raise RuntimeError(
            f"{desc or 'a job'}: a worker process died. Workers are spawned and re-import the main script: in a "
            "script, put the call under `if __name__ == '__main__':`; or run in this process with workers=1 "
            "(`--workers 1`)") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return [results_by_index[i] for i in range(len(jobs))]
