"""QR-DQN pieces against hand-computed values: the loss (eq. 10), the target, the greedy action."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import wdist
from wdist_apps.qrdqn.agent import (
    _make_update,
    build_network,
    crosses_target_sync,
    epsilon_at,
    quantile_targets,
    td_loss,
)
from wdist_apps.qrdqn.config import QRDQNConfig
from wdist_apps.qrdqn.networks import QuantileNetwork, greedy_action
from wdist_apps.qrdqn.replay import Batch


def test_quantile_huber_loss_hand_computed():
    # N = 2 quantiles at tau_hat = (0.25, 0.75); theta = (0, 1).
    pred = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    # One target sample at 0.5: u = (0.5, -0.5); weights |tau - 1{u<0}| = (0.25, 0.25);
    # Huber(0.5) = 0.125 -> 0.25*0.125 + 0.25*0.125 = 0.0625.
    near = torch.tensor([[0.5]], dtype=torch.float64)
    assert wdist.quantile_huber_loss(pred, near).item() == pytest.approx(0.0625)
    # kappa = 0 (pinball): 0.25*0.5 + 0.25*0.5 = 0.25.
    assert wdist.quantile_huber_loss(pred, near, kappa=0.0).item() == pytest.approx(0.25)
    # Target 3 (beyond kappa = 1): u = (3, 2); Huber = (2.5, 1.5); weights (0.25, 0.75)
    # -> 0.625 + 1.125 = 1.75.
    far = torch.tensor([[3.0]], dtype=torch.float64)
    assert wdist.quantile_huber_loss(pred, far).item() == pytest.approx(1.75)
    # Two target samples: the mean over j of the two cases above.
    both = torch.tensor([[0.5, 3.0]], dtype=torch.float64)
    assert wdist.quantile_huber_loss(pred, both).item() == pytest.approx((0.0625 + 1.75) / 2)


class FixedQuantiles(nn.Module):
    """A stand-in network: theta(s) looked up from a table by the (integer) state id."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.table[obs.long()]


def _hand_batch() -> tuple[FixedQuantiles, Batch]:
    # Next state 1 has two actions with 3 quantiles each. Action 0 has the larger maximum
    # quantile (10) but the smaller mean (10/3 < 4), so greedy-by-mean must pick action 1.
    table = torch.zeros(2, 2, 3)
    table[0] = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    table[1] = torch.tensor([[0.0, 0.0, 10.0], [3.0, 4.0, 5.0]])
    batch = Batch(
        obs=torch.tensor([0, 0]),
        actions=torch.tensor([1, 0]),
        returns=torch.tensor([1.0, -1.0]),
        discounts=torch.tensor([0.9, 0.0]),  # the second transition ended the episode
        next_obs=torch.tensor([1, 1]),
    )
    return FixedQuantiles(table), batch


def test_target_on_hand_built_batch():
    net, batch = _hand_batch()
    target = quantile_targets(net, batch)
    expected = torch.tensor([[1 + 0.9 * 3.0, 1 + 0.9 * 4.0, 1 + 0.9 * 5.0], [-1.0, -1.0, -1.0]])
    torch.testing.assert_close(target, expected)
    assert not target.requires_grad


def test_td_loss_uses_taken_action_and_detached_target():
    net, batch = _hand_batch()
    loss, q_mean = td_loss(net, net, batch, kappa=1.0)
    pred = torch.tensor([[4.0, 5.0, 6.0], [1.0, 2.0, 3.0]])
    target = torch.tensor([[3.7, 4.6, 5.5], [-1.0, -1.0, -1.0]])
    expected = wdist.quantile_huber_loss(pred, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert q_mean.item() == pytest.approx(3.5)
    loss.backward()
    # Only the two predicted rows (state 0) get gradient; the target (state 1) is detached.
    assert net.table.grad[1].abs().sum() == 0
    assert net.table.grad[0].abs().sum() > 0


def test_greedy_is_argmax_of_quantile_mean():
    # Action 0 has the largest quantile (10) but the smaller mean (10/3 < 4): greedy picks 1.
    quantiles = torch.tensor([[[0.0, 0.0, 10.0], [4.0, 4.0, 4.0]],
                              [[5.0, 5.0, 5.0], [-9.0, 0.0, 9.0]]])
    assert greedy_action(quantiles).tolist() == [1, 0]
    net = QuantileNetwork(num_actions=3, N=5, torso="mlp", in_shape=(4,), hidden=[16])
    assert net(torch.randn(64, 4)).shape == (64, 3, 5)


def test_nature_torso_shapes():
    net = QuantileNetwork(num_actions=6, N=200)
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert net(obs).shape == (2, 6, 200)


def test_epsilon_schedule_starts_after_learning_starts():
    # Dopamine's linearly_decaying_epsilon(decay_period=100, step, warmup_steps=1000, 0.01):
    # 1 until the warm-up ends, then linear to 0.01 over 100 steps.
    cfg = QRDQNConfig(epsilon_start=1.0, epsilon_final=0.01, epsilon_decay_steps=100,
                      learning_starts=1000)
    assert epsilon_at(0, cfg) == 1.0
    assert epsilon_at(1000, cfg) == 1.0
    assert epsilon_at(1050, cfg) == pytest.approx(0.505)
    assert epsilon_at(1100, cfg) == pytest.approx(0.01)
    assert epsilon_at(10_000, cfg) == pytest.approx(0.01)


@pytest.mark.parametrize("num_envs", [1, 3, 8])
def test_target_sync_counts_agent_steps(num_envs):
    """A copy each time the agent-step counter passes a multiple of the period, whatever the
    number of envs: with one env, after steps P, 2P, ... (Dopamine's training_steps % P)."""
    period, total = 40, 1000
    synced_at = [s + num_envs for s in range(0, total, num_envs)
                 if crosses_target_sync(s, num_envs, period)]
    assert len(synced_at) == total // period
    # each copy happens in the vector step that contains the multiple of the period
    for k, at in enumerate(synced_at, start=1):
        assert at - num_envs < k * period <= at
    assert not crosses_target_sync(0, 1, period) and crosses_target_sync(period - 1, 1, period)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_update_matches_eager(request, monkeypatch, backend):
    """``compile_update`` (CUDA graphs on a GPU) is checked here on CPU: the same three Adam
    steps on the same batches give the same losses and parameters as eager. ``aot_eager`` runs
    the same captured graphs (loss, its AOTAutograd backward, the functionalised Adam step)
    without code generation; inductor's C++ kernels (~15 s to build cold) are in the slow set.
    Value checks are off, as in training on CUDA (they would break the graph)."""
    if backend == "inductor":
        request.getfixturevalue("inductor_cpu")
    else:
        compile_ = torch.compile
        monkeypatch.setattr(torch, "compile", lambda fn, mode=None: compile_(fn, backend=backend))
    torch._dynamo.reset()
    counters.clear()
    g = torch.Generator().manual_seed(0)
    batches = [Batch(torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g),
                     torch.randn(16, generator=g), torch.full((16,), 0.99),
                     torch.randn(16, 4, generator=g)) for _ in range(3)]
    runs = []
    with wdist.set_validation(False):
        for compiled in (False, True):
            cfg = QRDQNConfig(env_id="CartPole-v1", torso="mlp", mlp_hidden=[32], N=8,
                              compile_update=compiled)
            torch.manual_seed(1)
            net = build_network(cfg, 2, (4,))
            target = build_network(cfg, 2, (4,)).requires_grad_(False)
            opt = torch.optim.Adam(net.parameters(), lr=1e-2, eps=cfg.adam_eps)
            update = _make_update(net, target, opt, cfg, torch.device("cpu"))
            losses = [update(b)[0].item() for b in batches]
            runs.append((losses, [p.detach().clone() for p in net.parameters()]))
    (eager_losses, eager_params), (comp_losses, comp_params) = runs
    assert counters["stats"]["unique_graphs"] >= 2  # the loss and the Adam step ran compiled
    assert comp_losses == pytest.approx(eager_losses, rel=1e-5)
    assert eager_losses[0] != pytest.approx(eager_losses[2], rel=1e-3)  # the steps did learn
    for pe, pc in zip(eager_params, comp_params):
        torch.testing.assert_close(pc, pe, rtol=1e-4, atol=1e-5)
