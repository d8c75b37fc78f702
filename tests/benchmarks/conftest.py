"""Collects every benchmark's figures into one table, printed at the end of ``make bench`` and
written to ``bench-results.json`` (repository root).

A benchmark records a figure with ``bench.record(...)``: what was measured, our value, the
baseline measured in the same run (when there is one), the unit, and the stated goal.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from gateway.runtime.threads import limit_native_threads

RESULTS = Path(__file__).resolve().parents[2] / "bench-results.json"

# as in the gateway process: numeric work one thread per stage (BLAS pools pinned to one)
limit_native_threads()


@dataclass(frozen=True)
class Figure:
    benchmark: str
    figure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    goal: str = ""


class Bench:
    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.current = ""

    def record(
        self,
        figure: str,
        value: float,
        unit: str,
        *,
        baseline: float | None = None,
        baseline_name: str = "",
        goal: str = "",
    ) -> None:
        """One figure; ``ratio`` is ``value / baseline`` when a baseline was measured."""
        ratio = value / baseline if baseline else None
        self.figures.append(
            Figure(self.current, figure, value, unit, baseline, baseline_name, ratio, goal)
        )

    def table(self) -> str:
        rows = [("benchmark", "figure", "value", "baseline", "ratio", "goal")]
        for f in self.figures:
            base = f"{f.baseline:.4g} {f.unit} ({f.baseline_name})" if f.baseline else ""
            rows.append(
                (
                    f.benchmark,
                    f.figure,
                    f"{f.value:.4g} {f.unit}",
                    base,
                    f"{f.ratio:.2f}x" if f.ratio is not None else "",
                    f.goal,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
        )


_BENCH = Bench()


@pytest.fixture
def bench(request: pytest.FixtureRequest) -> Bench:
    _BENCH.current = request.node.name.removeprefix("test_bench_")
    return _BENCH


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _BENCH.figures:
        return
    print("\n\n" + _BENCH.table())
    RESULTS.write_text(
        json.dumps(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {"python": platform.python_version(), "cpu": platform.processor()},
                "figures": [asdict(f) for f in _BENCH.figures],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {RESULTS}")
