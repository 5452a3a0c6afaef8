"""Scheduled indexing the way users run it: a real ``prefect server start`` on 127.0.0.1, a cron
deployment served by ``sparsehybrid schedule``, and a run that the server's scheduler creates."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("prefect")

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect_env(home: Path, api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """``prefect server start`` on 127.0.0.1 with its own home and database; yields its API URL."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = _prefect_env(home, None)
    env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "5"  # do not wait a minute for the first loop
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=env,
        stdout=open(home / "server.log", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail("prefect server exited: " + (home / "server.log").read_text()[-2000:])
            time.sleep(1)
        else:
            pytest.fail("prefect server did not start in 180 s")
        yield api, home
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _completed_flow_runs(api: str) -> list[dict]:
    body = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 200}
    response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def test_a_cron_deployment_served_by_schedule_is_run_by_the_servers_scheduler(
    prefect_server, cranfield, tiny_splade_dir, tmp_path
):
    api, home = prefect_server
    with open(cranfield / "corpus.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(8)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "job.yaml").write_text(
        "source: {path: c.jsonl}\nstore: qdrant-edge://idx\n"
        f"models: {{sparse: {tiny_splade_dir}, dense: null, max_length: 64}}\n"
    )
    cmd = [str(BIN / "sparsehybrid"), "schedule", "--config", str(tmp_path / "job.yaml"), "--cron", "* * * * *"]
    env = _prefect_env(home, api)
    env["PREFECT_RUNNER_POLL_FREQUENCY"] = "2"
    log = open(tmp_path / "schedule.log", "w")  # noqa: SIM115 - closed below
    # The server is shared with this module's other tests (random order): their deployments' runs
    # (started by hand, so not auto-scheduled) are not this one's.
    earlier = {r["id"] for r in _completed_flow_runs(api)}
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 200  # the next minute boundary, then the run itself
        completed: list[dict] = []
        while time.time() < deadline and not completed:
            time.sleep(3)
            completed = [r for r in _completed_flow_runs(api) if r.get("deployment_id") and r["id"] not in earlier]
            assert proc.poll() is None, (tmp_path / "schedule.log").read_text()[-3000:]
        assert completed, "no scheduled run completed: " + (tmp_path / "schedule.log").read_text()[-3000:]
        assert completed[0]["auto_scheduled"] is True  # created by the scheduler, not by us
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    from sparsehybrid.connectors import open_store

    store = open_store(f"qdrant-edge://{tmp_path / 'idx'}")
    try:
        assert set(store.document_states()) == {r["_id"] for r in rows}
    finally:
        store.close()


def test_schedule_without_a_prefect_server_refuses_and_says_how_to_start_one(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"_id": "1", "text": "x"}\n')
    (tmp_path / "job.yaml").write_text("source: {path: c.jsonl}\nstore: qdrant-edge://idx\n")
    out = subprocess.run(
        [str(BIN / "sparsehybrid"), "schedule", "--config", str(tmp_path / "job.yaml"), "--cron", "* * * * *"],
        env=_prefect_env(tmp_path / "home", None),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "prefect server start" in out.stderr and "PREFECT_API_URL" in out.stderr
    assert "serving" not in out.stdout


def test_the_work_pool_deployment_in_deploy_runs_on_a_process_worker(
    prefect_server, cranfield, tiny_splade_dir, tmp_path
):
    api, home = prefect_server
    repo = Path(__file__).resolve().parents[2]
    env = _prefect_env(home, api)
    prefect = str(BIN / "prefect")

    def run(*args: str) -> str:
        out = subprocess.run([prefect, *args], env=env, cwd=repo, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    with open(cranfield / "corpus.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(6)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    job = tmp_path / "job.yaml"
    job.write_text(
        "source: {path: c.jsonl}\nstore: qdrant-edge://idx\n"
        f"models: {{sparse: {tiny_splade_dir}, dense: null, max_length: 64}}\n"
    )
    run("work-pool", "create", "sparsehybrid", "--type", "process")
    run("deploy", "--prefect-file", "deploy/prefect.yaml", "--all")
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [prefect, "worker", "start", "--pool", "sparsehybrid"],
        env=env | {"PREFECT_WORKER_QUERY_SECONDS": "2"},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        run("deployment", "run", "sparsehybrid-index/hourly-index", "--param", f"config={job}")
        deadline = time.time() + 180
        completed: list[dict] = []
        while time.time() < deadline and not completed:
            time.sleep(3)
            completed = [r for r in _completed_flow_runs(api) if r["parameters"].get("config") == str(job)]
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        assert completed, (
            "no run of the work-pool deployment completed: " + (tmp_path / "worker.log").read_text()[-3000:]
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:  # Prefect's worker shuts down slowly on a loaded machine
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)
        log.close()
    from sparsehybrid.connectors import open_store

    store = open_store(f"qdrant-edge://{tmp_path / 'idx'}")
    try:
        assert set(store.document_states()) == {r["_id"] for r in rows}
    finally:
        store.close()
