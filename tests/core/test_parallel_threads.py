"""Numba's thread count is a per-thread setting: threads the engine starts for its own work
(the prefetching reader, the rules' side pools) take the caller's, so a run's ``threads``
holds there too."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import pytest

from engine_core.io.batches import prefetched
from engine_core.kernels.parallel import same_threads, side_pool


@pytest.fixture
def one_thread():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs a default of two or more Numba threads to tell the settings apart")
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def test_a_plain_thread_does_not_inherit_the_setting(one_thread):
    # what the helper is for: without it another thread sees Numba's default
    seen = []
    th = threading.Thread(target=lambda: seen.append(numba.get_num_threads()))
    th.start()
    th.join()
    assert seen == [numba.config.NUMBA_NUM_THREADS] and seen[0] > 1


def test_pools_and_the_prefetching_reader_run_with_the_callers_setting(one_thread):
    with ThreadPoolExecutor(1, initializer=same_threads()) as pool:
        assert pool.submit(numba.get_num_threads).result() == 1
    with side_pool(2, "side") as pool:  # the engine's writers, readers and side work
        assert [f.result() for f in [pool.submit(numba.get_num_threads) for _ in range(4)]] \
            == [1, 1, 1, 1]

    def counts():
        for _ in range(3):
            yield numba.get_num_threads(), threading.get_ident()

    got = list(prefetched(counts()))
    assert [n for n, _ in got] == [1, 1, 1]
    assert {ident for _, ident in got} != {threading.get_ident()}  # made in another thread
