"""Benchmark the state stores (runnable on its own: .venv/bin/python bench/store.py).

For SQLite and PostgreSQL (a throwaway local cluster, as the tests make; or ORCHESTR_BENCH_PG_URL):
slot claims per second, an idle tick over 200 scheduled workflows, and `orchestr runs` (the real
command, a fresh process each time) over 1,000 and 10,000 recorded runs. Prints one table.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestr.project import Project  # noqa: E402
from orchestr.store import Store, open_store  # noqa: E402
from orchestr.tick import tick  # noqa: E402

T0 = datetime(2026, 5, 1, 8, 0, 30, tzinfo=UTC)
WORKFLOWS = 200
CLAIMS = 1000


def median_seconds(fn: Callable[[], object], repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def make_project(folder: Path, url: str | None) -> Project:
    (folder / "workflows").mkdir(parents=True)
    if url:
        (folder / "orchestr.yaml").write_text(f"state: {{ url: '{url}' }}\n")
    for n in range(WORKFLOWS):
        (folder / "workflows" / f"w{n:03}.yaml").write_text(
            'schedule: { cron: "0 3 * * *", timezone: UTC }\nsteps: [ { id: a, run: "true" } ]\n')
    return Project(folder)


def claims_per_second(store: Store) -> float:
    began = time.perf_counter()
    for n in range(CLAIMS):
        store.claim_slots("claims", [(T0 + timedelta(minutes=n), "run", None)], claimed_by="bench:1", now=T0)
    return CLAIMS / (time.perf_counter() - began)


def idle_tick(project: Project, store: Store) -> float:
    def no_launch(*_: object) -> object:
        raise AssertionError("an idle tick starts nothing")

    tick(project, store, now=T0, launcher=no_launch)  # type: ignore[arg-type]  # the ledger begins
    return median_seconds(lambda: tick(project, store, now=T0 + timedelta(seconds=20), launcher=no_launch),  # type: ignore[arg-type]
                          repeat=3)


def record_runs(store: Store, total: int, already: int) -> None:
    for n in range(already, total):
        store.create_run(run_id=f"20260501-{n:06}-bench", workflow=f"w{n % WORKFLOWS:03}", trigger="manual",
                         inputs={}, options={})
        store.finish_run(f"20260501-{n:06}-bench", status="succeeded", exit_code=0, error=None, tokens={})


def runs_command(project: Project) -> float:
    argv = [sys.executable, "-m", "orchestr", "--project", str(project.root), "runs"]
    return median_seconds(lambda: subprocess.run(argv, check=True, capture_output=True))


def measure(name: str, url: str | None, folder: Path) -> dict[str, float]:
    if url:
        os.environ["ORCHESTR_STATE_URL"] = url
    else:
        os.environ.pop("ORCHESTR_STATE_URL", None)
    project = make_project(folder, url)
    store = open_store(project)
    try:
        result = {"claims/s": claims_per_second(store), "idle tick (200 wf)": idle_tick(project, store)}
        record_runs(store, 1000, 0)
        result["runs, 1k runs"] = runs_command(project)
        record_runs(store, 10_000, 1000)
        result["runs, 10k runs"] = runs_command(project)
    finally:
        store.close()
    print(f"measured {name}", file=sys.stderr)
    return result


@contextmanager
def postgres() -> Iterator[str]:
    given = os.environ.get("ORCHESTR_BENCH_PG_URL")
    if given:
        yield given
        return
    from tests.pgserver import cluster, find_bin_dir, fresh_database

    bin_dir, why = find_bin_dir()
    if bin_dir is None:
        raise SystemExit(why)
    with cluster(bin_dir) as url:
        yield fresh_database(url, "bench")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {"sqlite": measure("sqlite", None, Path(tmp) / "sqlite")}
        with postgres() as url:
            results["postgresql"] = measure("postgresql", url, Path(tmp) / "pg")
    print(f"{'measure':<22}{'sqlite':>12}{'postgresql':>12}{'pg/sqlite':>11}")
    for key in results["sqlite"]:
        lite, pg = results["sqlite"][key], results["postgresql"][key]
        unit = "" if key == "claims/s" else " s"
        print(f"{key:<22}{lite:>10.3f}{unit:<2}{pg:>10.3f}{unit:<2}{pg / lite:>9.2f}x")


if __name__ == "__main__":
    main()
