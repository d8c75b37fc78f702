"""Native thread pools: the gateway runs its numeric work one thread per stage.

OpenBLAS (behind numpy and scipy) starts a worker per core and lets it spin between the small
matrix products of a feature batch; on a two-core gateway that spinning costs more than the
products themselves. ``limit_native_threads`` pins BLAS and OpenMP pools to one thread for the
whole process (the stages already run in parallel with each other).
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def limit_native_threads() -> None:
    """Limit BLAS/OpenMP pools of the process to one thread each (idempotent)."""
    threadpool_limits(limits=1)
