"""torch's idle OpenMP threads, let go so that llama.cpp's threads in the same process keep spinning.

torch's wheel and llama.cpp's (xllamacpp) link the same OpenMP runtime (both need `libgomp.so.1`,
and a process loads it once). libgomp counts every thread it keeps, idle ones included; once they
outnumber the cores it spins only ~100 times at a barrier before sleeping (GCC's GOMP_SPINCOUNT
rule), and llama.cpp's threads sleep and wake at every one of the hundreds of barriers per token:
the README's job decoded 1.2-1.3x slower on 2 cores (BENCHMARKS.md, "The embedded scorer's eyes and the fluency guard", item 7).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable


_found: list[Callable[[int], int]] = []  # the function, once libgomp is loaded (it may load later)


def _pause() -> Callable[[int], int] | None:
    if not _found:
        try:
            libgomp = ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD)  # only the copy already loaded
            pause = libgomp.omp_pause_resource_all
        except (OSError, AttributeError):  # no libgomp loaded (yet), one older than GCC 9, not Linux
            return None
        pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
        _found.append(pause)
    return _found[0]


def release_openmp_threads() -> None:
    """Free the OpenMP thread pool of the calling thread (OpenMP 5's omp_pause_resource_all, soft);
    torch makes it again, in full, at its next parallel op. Other threads' pools are theirs to free;
    inside a parallel region libgomp refuses and nothing happens. Called before a step's requests to
    the in-process engine (worker.models.chat) and when a step's work ends (worker.runner), so that
    an idle worker thread keeps no pool while others decode. Does nothing where libgomp is not loaded."""
    pause = _pause()
    if pause is not None:
        pause(1)  # omp_pause_soft
