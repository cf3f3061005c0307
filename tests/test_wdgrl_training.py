"""WDGRL actually adapts on 50°-rotated moons; the CLI writes its reports and resumes.

The W1 check is a sanity band, not a precision claim: the training critic's W1 estimate must
fall, and the certified bounds (the training critic's and a small pair-constrained refit
critic's, on the same and on fresh samples) must lie below the exact W1 (``wdist.emd``) of those
features, and not far below.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from wdist_apps.cli import main
from wdist_apps.wdgrl import WDGRLClassifier
from wdist_apps.wdgrl.data import make_moons_task
from wdist_apps.wdgrl.experiment import w1_check

# The moons configs' setting (configs/wdgrl/moons50.yaml), shortened for CI.
PARAMS = dict(hidden=(500,), critic_hidden=(100,), lr=1e-3, critic_lr=1e-3, epochs=12, min_steps=0,
              standardize=None,
              device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_wdgrl_beats_source_only_and_certified_critic_w1_is_close_below_emd():
    task = make_moons_task(50.0)
    acc = {m: [] for m in ("source_only", "wdgrl")}
    for seed in (0, 1):
        for m in acc:
            est = WDGRLClassifier(method=m, random_state=seed, **PARAMS)
            est.fit(task.Xs, task.ys, task.Xt)
            acc[m].append(est.score(task.Xt_test, task.yt_test))
            if m == "wdgrl":
                w1 = [r["w1"] for r in est.history_]
                assert np.mean(w1[-3:]) < 0.8 * np.mean(w1[:2])  # the critic's W1 falls
                if seed == 0:  # certified bounds are <= emd; the refit one is not far below
                    c = w1_check(est, task, 300, seed, refit_steps=200, refit_hidden=(64, 64))
                    assert 0.6 * c["emd_w1"] < c["critic_cert"] <= c["emd_w1"] * (1 + 1e-9), c
                    assert 0.75 * c["emd_w1"] < c["refit_cert"] <= c["emd_w1"] * (1 + 1e-9), c
                    assert c["n_fresh"] == 300 and 0 < c["fresh_cert"] <= c["fresh_emd"], c
                    assert c["emd_floor"] < c["emd_w1"]
    gain = np.array(acc["wdgrl"]) - np.array(acc["source_only"])
    assert gain.min() > 0.1, acc


def test_cli_run_writes_table_json_plots_and_resumes(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        "task": "moons", "angle": 30.0, "methods": ["source_only", "wdgrl", "target_only"],
        "estimator": {"hidden": [32], "critic_hidden": [16], "lr": 1e-2, "epochs": 2,
                      "min_steps": 0}, "seeds": 2,
        "w1_check_samples": 100, "w1_refit_steps": 30,  # the check's plumbing, not its accuracy
    }))
    out = tmp_path / "out"
    argv = ["wdgrl", "run", "--config", str(cfg), "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    data = json.loads((out / "moons30.json").read_text())
    res = data["tasks"][0]["methods"]
    assert set(res) == {"source_only", "wdgrl", "target_only"}
    assert len(res["wdgrl"]["acc"]) == 2 and 0 <= res["wdgrl"]["mean"] <= 1
    assert "| moons30 |" in (out / "moons30.md").read_text()
    for png in ("curves_moons30.png", "features_moons30.png", "moons30_accuracy.png"):
        assert (out / png).stat().st_size > 1000
    assert (out / "runs" / "moons30" / "wdgrl_seed1.pt").is_file()
    first = res["wdgrl"]["acc"]

    def no_training(*args, **kwargs):
        raise AssertionError("--resume retrained a finished run")

    monkeypatch.setattr(WDGRLClassifier, "_train_epoch", no_training)
    assert main([*argv, "--resume"]) == 0  # finished runs are restored, not retrained
    again = json.loads((out / "moons30.json").read_text())["tasks"][0]["methods"]["wdgrl"]
    assert again["acc"] == first


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["wdgrl", "run", "--device", "cpu"]) == 2
    assert "--config is required" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: moons\nlearning_rate: 0.1\n")
    assert main(["wdgrl", "run", "--config", str(bad)]) == 2
    assert "unknown config key(s) ['learning_rate']" in capsys.readouterr().err
    assert main(["wdgrl", "bench", "--config", str(bad)]) == 2
    assert "unrecognized arguments: --config" in capsys.readouterr().err
    bad.write_text("task: moons\nestimator: {hidden: [8], learning_rate: 0.1}\n")
    assert main(["wdgrl", "run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown WDGRLClassifier parameter(s) ['learning_rate']" in err and "'wd_weight'" in err
    moons = Path(__file__).resolve().parents[1] / "configs" / "wdgrl" / "moons10.yaml"
    assert main(["wdgrl", "run", "--config", str(moons), "--out", str(tmp_path / "typo"),
                 "--resume"]) == 2  # nothing to resume: not a silent fresh start
    assert "--resume: no checkpoint under" in capsys.readouterr().err
    assert main(["wdgrl", "run", "--config", str(moons), "--source", "s.npz"]) == 2
    assert "read by task 'files' only" in capsys.readouterr().err


def test_cli_on_user_feature_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    Xs = rng.normal(size=(60, 5))
    ys = (Xs[:, 0] > 0).astype(int)
    Xt = rng.normal(size=(40, 5)) + 0.5
    np.savez(tmp_path / "src.npz", X=Xs, y=ys)
    lines = ["a,b,c,d,e,label"] + [",".join(map(str, r)) + f",{int(r[0] > 0.5)}" for r in Xt]
    (tmp_path / "tgt.csv").write_text("\n".join(lines))
    shipped = Path(__file__).resolve().parents[1] / "configs" / "wdgrl" / "files.yaml"
    data = yaml.safe_load(shipped.read_text())
    data["estimator"] = {**data["estimator"], "min_steps": 0}  # 1 epoch of 2 steps, for CI
    data.update(w1_check_samples=100, w1_refit_steps=30)  # the W1 check cut to the plumbing
    config = tmp_path / "files.yaml"
    config.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    assert main(["wdgrl", "run", "--config", str(config), "--source",
                 str(tmp_path / "src.npz"), "--target", str(tmp_path / "tgt.csv"), "--epochs",
                 "1", "--seeds", "1", "--methods", "source_only", "wdgrl",
                 "--device", "cpu"]) == 0
    # the default output folder is the git-ignored runs/wdgrl, never the committed results
    res = json.loads((tmp_path / "runs" / "wdgrl" / "tgt.json").read_text())["tasks"][0]
    assert res["summary"].startswith("tgt: source (60, 5), target adapt (20, 5)")
    assert 0 <= res["methods"]["wdgrl"]["mean"] <= 1


def test_config_estimator_block_holds_each_default_once():
    from wdist_apps.runtime import load_config
    from wdist_apps.wdgrl.experiment import WDGRLConfig

    est = WDGRLClassifier()
    assert WDGRLConfig().params == {k: v for k, v in est.get_params().items()
                                    if k not in ("method", "random_state", "device", "verbose")}
    cfg = load_config(WDGRLConfig, Path(__file__).resolve().parents[1] / "configs" / "wdgrl"
                      / "digits_mnist.yaml")
    made = cfg.make_estimator("dann", 2, "cpu")
    assert made.hidden == (500, 100) and made.wd_weight == 0.1 and made.random_state == 2
    assert made.batch_size == est.batch_size  # not in the file: the estimator's default
    mnistm = load_config(WDGRLConfig, Path(__file__).resolve().parents[1] / "configs" / "wdgrl"
                         / "mnist_mnistm.yaml")
    assert mnistm.params["lr"] == 1e-4 and mnistm.params["critic_lr"] == 1e-3  # paper, Office
    cfg.set(epochs=3, lr="1e-4")  # YAML reads 1e-4 as a string: coerced like the file
    assert cfg.params["epochs"] == 3 and cfg.params["lr"] == 1e-4
