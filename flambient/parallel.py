"""A thread-pool map with an optional progress callback (shared by ingest, the frame cache and pairs)."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

#: ``progress(done, total)``: called after each finished item, from the worker threads.
ItemProgress = Callable[[int, int], None]


def parallel_map(func: Callable[[Any], Any], items: list[Any], n_jobs: int | None = None,
                 progress: ItemProgress | None = None) -> list[Any]:
    """``[func(x) for x in items]`` on a thread pool, results in input order.

    rawpy, Pillow and OpenCV release the GIL, so threads decode in parallel. ``n_jobs`` None
    uses every core. ``progress(done, total)`` is called once per finished item (serialised
    by a lock, so ``done`` counts up by one each call).
    """
    if not items:
        return []
    total = len(items)
    call = func
    if progress is not None:
        lock = threading.Lock()
        done = [0]

        def call(x: Any) -> Any:
            res = func(x)
            with lock:
                done[0] += 1
                progress(done[0], total)
            return res

    jobs = n_jobs if n_jobs else min(total, os.cpu_count() or 1)
    if jobs == 1 or total == 1:
        return [call(x) for x in items]
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=jobs, prefer="threads")(delayed(call)(x) for x in items))
