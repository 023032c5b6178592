"""map_in_processes: results in job order, a job's error raised here, single-threaded spawned workers."""

import pytest

from wavalign_kit.worker_pool import map_in_processes


def square_and_threads(x: int) -> tuple[int, int, list[int]]:
    import torch
    from threadpoolctl import threadpool_info

    return x * x, torch.get_num_threads(), sorted({info["num_threads"] for info in threadpool_info()})


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("job 3 is bad")
    return x


def test_results_keep_job_order_and_workers_are_single_threaded():
    results = map_in_processes(square_and_threads, [3, 1, 2], workers=2, progress=False)
    assert [r[0] for r in results] == [9, 1, 4]
    assert all(threads == 1 and pools in ([], [1]) for _, threads, pools in results)
    assert map_in_processes(square_and_threads, [5], workers=1, progress=False)[0][0] == 25   # in this process


def test_a_job_error_is_raised_and_bad_worker_counts_are_named():
    with pytest.raises(ValueError, match="job 3 is bad"):
        map_in_processes(fail_on_three, [1, 2, 3, 4], workers=2, progress=False)
    with pytest.raises(ValueError, match="workers=0"):
        map_in_processes(fail_on_three, [1], workers=0)
