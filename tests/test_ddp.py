"""Data-parallel training (apps/runtime/distributed.py): the harness's helpers in one process, and
the trainers on 2 gloo processes in ONE spawned run (each spawn costs ~20 s here): the ranks'
work is done in ``_worker``, the checks against one-process references here."""

import copy
import socket

import pytest
import torch
import torch.multiprocessing as mp

from wdist_apps.runtime import distributed, load_checkpoint
from wdist_apps.wgan.config import WGANConfig
from wdist_apps.wgan.trainer import Trainer

WORLD, SHARD = 2, 4  # 2 ranks, 4 samples each: the one-process reference sees 8


def test_one_process_is_the_identity(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    module = torch.nn.Linear(2, 1)
    assert distributed.wrap(module) is module and distributed.unwrap(module) is module
    assert distributed.shard(7) == 7 and distributed.rank_seed(5) == 5
    assert distributed.gather("x") == "x" and distributed.own({"per_rank": ["a", "b"]}) == "a"
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.is_main() and distributed.on_main(lambda a: a + 1, 1) == 2
    opt = torch.optim.SGD(module.parameters())
    t = torch.arange(5)
    assert distributed.sync_grads(opt) is opt and distributed.split(t) is t


def test_rank_helpers_read_torchrun_env(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert not distributed.is_main() and distributed.shard(8) == 4
    with pytest.raises(ValueError, match="batch_size=7 must be a multiple of the number of"):
        distributed.shard(7)
    seed1 = distributed.rank_seed(0)
    monkeypatch.setenv("RANK", "0")
    assert len({seed1, distributed.rank_seed(0), distributed.rank_seed(1), 0}) == 4
    assert distributed.own({"per_rank": ["a", "b"]}) == "a"
    with pytest.raises(ValueError, match="random streams of 3 processes"):
        distributed.own({"per_rank": ["a", "b", "c"]})


def _cfg(out, **kw) -> WGANConfig:
    return WGANConfig(**{"data": "8gaussians", "lipschitz": "gp", "width": 16, "n_critic": 2,
                         "batch_size": WORLD * SHARD, "steps": 4, "log_every": 2,
                         "sample_every": 100, "checkpoint_every": 2, "eval_samples": 32,
                         "out_dir": str(out), **kw})


def _params(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def _worker(rank: int, port: int, out) -> None:
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WDIST_NO_PROGRESS="1")
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    found = {}
    # 1. one WGAN-GP critic update on this rank's shard of a fixed global batch
    trainer = Trainer(_cfg(out / "step"))
    found["critic0"] = copy.deepcopy(trainer.critic.module)
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(WORLD * SHARD, 2, generator=g), torch.randn(WORLD * SHARD, 2,
                                                                        generator=g)
    own = slice(rank * SHARD, (rank + 1) * SHARD)
    torch.manual_seed(100 + rank)  # the interpolation weights of this rank's penalty
    trainer._critic_train.step(real[own], fake[own])
    found["grads"] = [p.grad.clone() for p in trainer.critic.module.parameters()]
    found["real"], found["fake"] = real, fake
    torch.set_default_dtype(torch.float32)  # the toy data are float32
    # 2. several steps through fit: the ranks' weights stay the same, their data do not
    whole = Trainer(_cfg(out / "whole"))
    found["seeds"] = whole.data_rng.initial_seed(), torch.initial_seed()
    whole.fit()
    found["whole"] = _params(whole.generator), _params(whole.critic.module)
    # 3. two steps, then a resume for two more
    Trainer(_cfg(out / "resumed", steps=2)).fit()
    resumed = Trainer(_cfg(out / "resumed"))
    resumed.fit(resume=True)
    found["resumed"] = _params(resumed.generator), _params(resumed.critic.module)
    # 4. WDGRL: each rank its part of the same global batches, every update averaged
    from wdist_apps.wdgrl.estimator import WDGRLClassifier

    g = torch.Generator().manual_seed(2)
    xs, xt = torch.randn(40, 3, generator=g), torch.randn(40, 3, generator=g) + 0.5
    clf = WDGRLClassifier(hidden=(8,), critic_hidden=(8,), n_critic=2, batch_size=8, epochs=2,
                          min_steps=0, random_state=0, device="cpu")
    clf.fit(xs.numpy(), (xs[:, 0] > 0).numpy(), xt.numpy(), checkpoint=out / "wdgrl.pt")
    found["wdgrl"] = (_params(clf.extractor_), _params(clf.head_),
                      _params(clf.aligner_.critic.module))
    # 5. QR-DQN: each rank its own envs, exploration and replay, every update averaged
    from wdist_apps.qrdqn.agent import train
    from wdist_apps.qrdqn.config import QRDQNConfig
    from wdist_apps.runtime import load_config
    from wdist_apps.runtime.run import find_config

    cfg = load_config(QRDQNConfig, find_config("qrdqn", "cartpole"), {
        "total_frames": 480, "learning_starts": 160, "log_every_steps": 160,
        "checkpoint_every_frames": 320, "mlp_hidden": [16, 16]})
    result = train(cfg, out / "qrdqn", torch.device("cpu"))
    found["qrdqn"] = (_params(result["net"]),)
    found["qrdqn_updates"] = result["updates"]
    torch.save(found, out / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reference_gp_grads(critic, real, fake, ranks=range(WORLD), lam=10.0):
    """The WGAN-GP critic loss of Gulrajani et al., written out here, on the shards of ``ranks``
    with the interpolation weights each rank drew:
    E f(fake) - E f(real) + lam E (|grad f(x^)| - 1)^2."""
    alpha = []
    for r in ranks:
        torch.manual_seed(100 + r)
        alpha.append(torch.rand(SHARD, 1, dtype=real.dtype))
    alpha = torch.cat(alpha)
    rows = torch.cat([torch.arange(r * SHARD, (r + 1) * SHARD) for r in ranks])
    real, fake = real[rows], fake[rows]
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (slope,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    loss = (critic(fake).mean() - critic(real).mean()
            + lam * ((slope.norm(dim=1) - 1) ** 2).mean())
    return torch.autograd.grad(loss, list(critic.parameters()))


def test_wgan_on_two_gloo_ranks(tmp_path):
    """WGAN-GP under DDP on 2 gloo processes: one critic update's gradients equal one process's
    on the doubled batch (float64); after 4 steps the ranks' weights are identical (their data
    were not); a run resumed after 2 steps ends with the uninterrupted run's weights; rank 0
    alone wrote the run folder, and a one-process run reads its checkpoint. WDGRL's fit on 2
    ranks ends with the same weights on both, and so does a QR-DQN run (each rank its own
    CartPole envs and replay)."""
    mp.spawn(_worker, args=(_free_port(), tmp_path), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    first = ranks[0]
    want = _reference_gp_grads(first["critic0"], first["real"], first["fake"])
    for found in ranks:
        for got, ref in zip(found["grads"], want, strict=True):
            torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    # the test can fail: one shard's own gradient is not the whole batch's
    half = _reference_gp_grads(first["critic0"], first["real"], first["fake"], ranks=[0])
    assert max((a - b).abs().max() for a, b in zip(half, want, strict=True)) > 1e-3
    assert all(a != b for a, b in zip(ranks[0]["seeds"], ranks[1]["seeds"], strict=True))
    assert ranks[0]["qrdqn_updates"] == ranks[1]["qrdqn_updates"] > 0
    for key in ("whole", "resumed", "wdgrl", "qrdqn"):
        for a, b in zip(ranks[0][key], ranks[1][key], strict=True):
            assert torch.equal(a, b), key
    for a, b, init in zip(first["resumed"], first["whole"], (None, _params(first["critic0"]))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert init is None or not torch.allclose(b.double(), init)
    state = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert len(state["rng"]["per_rank"]) == WORLD and len(state["data_rng"]["per_rank"]) == WORLD
    log = (tmp_path / "whole" / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log] == ["step", "0", "2", "4"]
    assert load_checkpoint(tmp_path / "wdgrl.pt")["epoch"] == 2
    qrdqn = load_checkpoint(tmp_path / "qrdqn" / "checkpoint.pt")
    assert len(qrdqn["sample_gen"]["per_rank"]) == WORLD and qrdqn["replay"] is None
    single = Trainer(_cfg(tmp_path / "single"))
    single.load_state_dict(state)
    assert single.step == 4
