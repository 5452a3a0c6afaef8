"""The chaos soak (benchmarks/soak.py, issue 23): short planned runs on the store alone and
through a service, as the user runs the script, and its checks shown to catch what they guard."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_soak(*args: str) -> dict:
    """The script in its own process (it makes itself a child subreaper), its summary parsed."""
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", "0", "--seed", "7", "--ids", "120", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    summary = json.loads(proc.stdout)
    assert proc.returncode == 0, summary["failures"]
    assert summary["failures"] == []
    return summary


def test_a_planned_soak_on_the_store_alone_keeps_every_acknowledged_document():
    plan = ["index", "sync", "kill", "search_during", "kill", "search"]
    summary = run_soak("--no-service", "--plan", ",".join(plan))
    ops, checks = summary["operations"], summary["checks"]
    # the first job creates the collection; a search during a write is counted beside its job
    assert summary["operations_total"] == len(plan) + 1 + ops["search_during_write"]
    assert ops.get("kill9_index", 0) + ops.get("kill9_sync", 0) + ops.get("kill9_missed", 0) == 2  # missed: done first
    assert ops["search_during_write"] == 1
    assert not any(k.startswith("service") for k in ops)
    assert checks["check_store"] == len(plan) + 2  # after every step and at the end
    assert checks["check_processes"] == len(plan) + 2


@pytest.mark.slow
def test_a_planned_soak_through_a_service_survives_its_kill_mid_write():
    """Each service start loads SPLADE-tiny (~10 s here): one kill -9 and restart keeps it short
    (the 30-minute soak does the rest: graceful restarts, stops, searches during writes, CLI jobs)."""
    plan = ["kill9_during_job", "tune"]
    summary = run_soak("--plan", ",".join(plan))
    ops, checks = summary["operations"], summary["checks"]
    assert ops["service_kill9_during_job"] == 1 and ops["tune"] == 1
    assert checks["check_service"] >= len(plan)  # every step, checked through the service's API
    assert checks["check_store"] >= 2  # before the service started, and after it stopped at the end


def soak_state(tmp_path: Path, ids: int = 3):
    module = load_soak()
    s = module.Soak(tmp_path, random.Random(0), ids)
    s.service.http.close()
    return module, s


def test_the_content_check_refuses_stale_absent_and_duplicated_documents(tmp_path):
    module, s = soak_state(tmp_path)
    s.settle({"d0": "d0 v1", "d1": "d1 v1"}, sync=False, acknowledged=True)
    s.check_content({"d0": "d0 v1", "d1": "d1 v1"})
    with pytest.raises(module.InvariantBroken, match="d0: stored 'd0 v0'"):
        s.check_content({"d0": "d0 v0", "d1": "d1 v1"})  # stale
    with pytest.raises(module.InvariantBroken, match="d1: stored None"):
        s.check_content({"d0": "d0 v1"})  # lost
    with pytest.raises(module.InvariantBroken, match="d2: stored"):
        s.check_content({"d0": "d0 v1", "d1": "d1 v1", "d2": "d2 v1"})  # never acknowledged
    with pytest.raises(module.InvariantBroken, match="duplicate d0"):
        s.one_per_document([{"doc_id": "d0", "text": "d0 v1"}, {"doc_id": "d0", "text": "d0 v1"}])


def test_a_killed_job_allows_either_version_and_a_killed_sync_also_absence(tmp_path):
    module, s = soak_state(tmp_path)
    s.settle({"d0": "d0 v1", "d1": "d1 v1"}, sync=False, acknowledged=True)
    s.settle({"d0": "d0 v2"}, sync=False, acknowledged=False)
    for d0 in ("d0 v1", "d0 v2"):
        s.check_content({"d0": d0, "d1": "d1 v1"})
    with pytest.raises(module.InvariantBroken, match="d0: stored None"):
        s.check_content({"d1": "d1 v1"})  # a killed index job deletes nothing
    s.settle({"d0": "d0 v3"}, sync=True, acknowledged=False)
    s.check_content({"d0": "d0 v3"})  # a killed sync may have deleted what it did not send
    with pytest.raises(module.InvariantBroken, match="d0: stored None"):
        s.check_content({})  # but not what it sent
    s.settle({"d0": "d0 v3"}, sync=True, acknowledged=True)
    with pytest.raises(module.InvariantBroken, match="d1: stored 'd1 v1'"):
        s.check_content({"d0": "d0 v3", "d1": "d1 v1"})  # an acknowledged sync deleted d1


def test_the_process_check_finds_a_child_left_running(tmp_path):
    module, s = soak_state(tmp_path)
    s.exit_grace = 0.2
    proc = s.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(module.InvariantBroken, match=f"processes left running: .*{proc.pid}"):
            s.check_processes()
    finally:
        proc.kill()
        proc.wait()


def test_the_process_check_finds_an_orphaned_grandchild(tmp_path):
    """A killed job's own child (say its temporary Prefect API) outlives it as an orphan: the
    soak, a child subreaper, still sees it (run in a process of its own: it adopts orphans)."""
    code = f"""
import random, subprocess, sys
sys.path.insert(0, {str(SOAK.parent)!r})
import soak
soak.become_subreaper()
s = soak.Soak(__import__("pathlib").Path({str(tmp_path)!r}), random.Random(0), 3)
s.exit_grace = 0.5
parent = s.spawn([sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen(['sleep', '60']); print(p.pid)"])
grandchild = int(parent.stdout.readline())
parent.wait()
try:
    s.check_processes()
    print("missed")
except soak.InvariantBroken as exc:
    print("found" if str(grandchild) in str(exc) else f"other: {{exc}}")
s.close()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1:] == ["found"], out.stderr[-2000:]
