"""Dask for the build: a local cluster tuned for it, and tasks kept a few per worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def client_for(cfg):
    """A client of ``cfg.scheduler``, else of a new local cluster of ``cfg.workers``
    processes (all cores by default); and that cluster, to close after (or None)."""
    from dask.distributed import Client

    if cfg.scheduler:
        return Client(cfg.scheduler), None
    import os

    workers = cfg.workers or os.cpu_count() or 1
    cluster = local_cluster(workers)
    return Client(cluster), cluster


def local_cluster(workers: int):
    """A LocalCluster of single-threaded worker processes, tuned for the build.

    Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` so workers hand freed memory back
    at once; a build allocates a roll per file and a row group per shard, and faulting
    those pages in again costs ~20 % of its time. Workers here keep 256 MiB. The workers'
    statistical profiler (a stack sample every 10 ms, for the dashboard) is off.
    """
    import dask
    from dask.distributed import LocalCluster

    env = "distributed.nanny.pre-spawn-environ."
    with dask.config.set({env + "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
                          env + "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
                          "distributed.worker.profile.enabled": False}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=":0", silence_logs=logging.ERROR)


class Tasks:
    """Dask tasks in flight, a few per worker; the cluster starts with the first task."""

    def __init__(self, cfg, progress: Callable[[int], None] | None = None):
        self.cfg, self.progress = cfg, progress
        self.client = self.cluster = None
        self.pending: set = set()
        self.done = 0

    def submit(self, fn, *args) -> None:
        if self.client is None:
            self.client, self.cluster = client_for(self.cfg)
            self.limit = 2 * max(1, len(self.client.scheduler_info().get("workers", {})))
        while len(self.pending) >= self.limit:
            self._wait_one()
        self.pending.add(self.client.submit(fn, *args, pure=False,
                                            key=f"musicpairs-{fn.__name__}-{time.time_ns()}"))

    def drain(self) -> None:
        while self.pending:
            self._wait_one()

    def _wait_one(self) -> None:
        self.done += _wait_one(self.pending)
        if self.progress:
            self.progress(self.done)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _wait_one(pending: set) -> int:
    """Wait for one future to finish; raise its error if it failed."""
    from dask.distributed import wait

    finished = wait(pending, return_when="FIRST_COMPLETED").done
    for future in finished:
        pending.discard(future)
        if future.status != "finished":  # the record is on disk: fetch only errors
            future.result()
    return len(finished)
