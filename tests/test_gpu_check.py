"""``benchmarks/gpu_check.py`` on the CPU: its workers' code paths on tiny inputs (so the first
GPU minute is never spent on a typo), the report, and the runner's timeout and budget rules.
The whole ``--device cpu --tiny`` run (every row, each in a subprocess) is the slow test."""

import json
import math
import os
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def _rows(capsys) -> list[dict]:
    out = capsys.readouterr().out
    return [json.loads(line[4:]) for line in out.splitlines() if line.startswith("ROW ")]


def _work(name: str, capsys, **spec) -> list[dict]:
    gpu_check.WORKERS[name]({"device": "cpu", "tiny": True, "deadline": time.time() + 60,
                             **spec})
    return _rows(capsys)


PAYLOAD = {"machine": {"gpu": None, "cpu": "test", "cpu_cores": 2, "torch_threads": 1,
                       "versions": {"torch": "x"}, "command": "pytest"},
           "budget_s": 1.0, "tiny": True, "elapsed_s": 0.5, "skipped": ["apps: skipped"]}


def test_sinkhorn_columns_and_their_table(capsys):
    sk = []
    for column in ("wdist", "reference (float64)", "GeomLoss (tensorized)", "flash-sinkhorn"):
        sk += _work("core", capsys, column=column, sizes=[16], dims=[3])
    by = {r["column"]: r for r in sk}
    assert all(by[c]["status"] == "ok" for c in ("wdist", "reference (float64)",
                                                 "GeomLoss (tensorized)"))
    # CUDA-only peer: constructed here, its CUDA check is the recorded error
    assert by["flash-sinkhorn"]["status"].startswith("error: ValueError")
    ref = by["reference (float64)"]["value"]
    assert abs(by["wdist"]["value"] - ref) < 1e-5 * ref
    # GeomLoss's |x - y|^2 / 2 at blur / sqrt(2), doubled: the same problem (to its schedule)
    assert abs(by["GeomLoss (tensorized)"]["value"] - ref) < 0.03 * ref
    lin = _work("linear_reference", capsys, sizes=[16], dims=[3])
    assert lin[0]["n"] == 16 and 0 < lin[0]["linear"] < 2 * ref
    md = gpu_check.report({**PAYLOAD, "sinkhorn": sk, "linear_reference": lin})
    err = abs(by["wdist"]["value"] - ref) / ref
    assert f"| 16 | 3 | 0.1 | wdist | {gpu_check._t(by['wdist'])} | 1 |  | {err:.1e} |" in md
    ratio = by["wdist"]["time_s"] / by["GeomLoss (tensorized)"]["time_s"]
    assert f"| GeomLoss (tensorized) | {gpu_check._t(by['GeomLoss (tensorized)'])} | 1 | " \
        f"{ratio:.2f} |" in md
    assert "- apps: skipped" in md


# two dynamo traces (~14 s here); the capture alone is a fast test in test_core_sinkhorn_fixed
@pytest.mark.slow
def test_fixed_work_column_captures_one_graph(capsys):
    rows = _work("core", capsys, column="wdist fixed work (compiled)", sizes=[16], dims=[3])
    ref = _work("core", capsys, column="reference (float64)", sizes=[16], dims=[3])
    assert rows[0]["status"] == "ok", rows[0]["status"]
    # GeomLoss's schedule (scaling 0.9, no stopping test): close to the converged value
    assert abs(rows[0]["value"] - ref[0]["value"]) < 0.03 * ref[0]["value"]


def test_one_d_emd_and_wmd_rows(capsys):
    payload = {**PAYLOAD, "small": _work("small", capsys), "wmd": _work("wmd", capsys)}
    assert all(r["status"] == "ok" for r in payload["small"] + payload["wmd"])
    assert {r["kind"] for r in payload["small"]} == {"1-D", "emd"}
    assert all(r["pairs_per_s"] > 0 for r in payload["wmd"])
    md = gpu_check.report(payload)
    assert "WMD Sinkhorn, 8 words/doc, batch 8 | 16 pairs" in md and "| emd n = 60 |" in md


def test_app_rows(capsys):
    payload = {**PAYLOAD, "wgan": _work("wgan", capsys), "qrdqn": _work("qrdqn", capsys)}
    assert all(r["status"] == "ok" for r in payload["wgan"] + payload["qrdqn"])
    assert [r["method"] for r in payload["wgan"]] == ["clip", "gp", "sn"]
    assert payload["qrdqn"][0]["updates_per_s"] > 0
    md = gpu_check.report(payload)
    assert "QR-DQN learner | compile_update=False, batch 8" in md and "| WGAN dcgan" in md


def test_runner_records_timeouts_and_the_spent_budget(tmp_path):
    args = Namespace(device="cpu", tiny=True, budget_s=60.0, out=tmp_path, cap_factor=1.0)
    check = gpu_check.Check(args)
    rows = check.run("big", "big", {"n": 3000}, cap=1.5, label="slow solve")
    assert rows[-1]["status"].startswith("failed (timed out after 2 s")
    check.deadline = time.time()  # the budget is spent: the next row is listed, not run
    assert check.run("wmd", "wmd", {}, cap=30, label="WMD pairs/s") == []
    md = (tmp_path / "check_cpu_tiny.md").read_text()
    assert "- WMD pairs/s: skipped, the global time budget is spent" in md
    assert "slow solve | failed (timed out" in md
    saved = json.loads((tmp_path / "check_cpu_tiny.json").read_text())
    assert saved["machine"]["versions"]["triton"] and saved["big"][-1]["incomplete"]


@pytest.mark.slow
def test_full_tiny_check_runs_every_row(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device",
                          "cpu", "--tiny", "--out", str(tmp_path), "--budget-s", "1500",
                          "--cap-factor", "10"],  # caps sized for a quiet machine
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    saved = json.loads((tmp_path / "check_cpu_tiny.json").read_text())
    assert not saved["skipped"]
    for section in ("kernel", "sinkhorn", "linear_reference", "big", "small", "wmd", "wgan",
                    "wdgrl", "qrdqn"):
        rows = saved[section]
        bad = [r for r in rows if r.get("status", "ok") != "ok"
               and not r.get("column", "").startswith("flash-sinkhorn")
               and not r["status"].startswith(("KeOps on CPU", "3-D only"))]
        assert rows and not bad, (section, bad)
    accuracy = [r for r in saved["kernel"] if r["kind"] == "accuracy"]
    assert all(r["rel_err_value"] < 1e-5 and math.isfinite(r["rel_err_grad_x"])
               for r in accuracy)
    triton = [r for r in saved["sinkhorn"] if r["column"].endswith("(triton soft-min)")]
    ref = {(r["n"], r["d"]): r["value"] for r in saved["sinkhorn"]
           if r["column"] == "wdist" and r["status"] == "ok"}
    assert triton and all(r["status"] == "ok" for r in triton)
    assert {r["triton"] for r in saved["big"]} == {False, True}
    assert ref  # the table has our rows to compare the peers with
