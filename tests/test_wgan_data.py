"""wdist_apps.wgan.data: toy sets, bundled digits, image folders (mixed, corrupt), .npz arrays."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from wdist_apps.wgan.data import (
    load_digits,
    load_image_folder,
    load_images,
    load_mnist,
    load_npz,
    sample_toy,
)


def test_8gaussians_modes_and_scale():
    x = sample_toy("8gaussians", 4000, torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2)
    r = x.norm(dim=1)
    assert torch.allclose(r, torch.full_like(r, 2 / 1.414), atol=0.1)  # a circle of radius 2/1.414
    angles = torch.round(torch.atan2(x[:, 1], x[:, 0]) / (np.pi / 4)) % 8
    assert torch.bincount(angles.long(), minlength=8).min() > 400  # all 8 modes, balanced


def test_25gaussians_grid():
    x = sample_toy("25gaussians", 5000, torch.Generator().manual_seed(0)) * 2.828 / 2
    centers = torch.round(x)
    assert torch.all(centers.abs() <= 2)
    assert len({tuple(c) for c in centers.tolist()}) == 25
    assert (x - centers).abs().max() < 0.05 * 5


def test_swissroll_is_seeded_and_scaled():
    a = sample_toy("swissroll", 500, torch.Generator().manual_seed(1))
    b = sample_toy("swissroll", 500, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.abs().max() < 2.0 and a.std() > 0.5


def test_bad_toy_name_and_n():
    with pytest.raises(ValueError, match="toy set"):
        sample_toy("moons", 10)
    with pytest.raises(ValueError, match="n must be"):
        sample_toy("8gaussians", 0)


def test_mnist_padded_to_32_in_unit_range():
    x, y = load_mnist(32)
    assert x.shape == (5000, 1, 32, 32) and y.shape == (5000,)
    assert x.min() == -1.0 and x.max() == 1.0
    assert torch.all(x[:, :, :2, :] == -1.0)  # the 2-pixel zero padding
    assert torch.bincount(y).tolist() == [500] * 10


def test_digits_8x8():
    x = load_digits(8)
    assert x.shape == (1797, 1, 8, 8) and x.min() >= -1 and x.max() <= 1


def _write_folder(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(rng.integers(0, 255, (50, 20), dtype=np.uint8), "L").save(tmp_path / "gray.jpg")
    Image.fromarray(rng.integers(0, 255, (16, 16, 4), dtype=np.uint8), "RGBA").save(
        tmp_path / "alpha.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.full((33, 33, 3), 200, np.uint8)).save(tmp_path / "sub" / "flat.jpeg")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "notes.txt").write_text("ignored")


def test_image_folder_mixed_sizes_modes_and_corrupt_file(tmp_path):
    _write_folder(tmp_path)
    with pytest.warns(UserWarning, match="broken.png"):
        x = load_image_folder(tmp_path, 32, channels=3)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    flat = x[2]  # sorted: alpha, gray, sub/flat, wide; a constant image stays constant
    assert flat.std() < 0.02 and flat.mean().item() == pytest.approx(200 / 127.5 - 1, abs=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = load_image_folder(tmp_path, 8, channels=1)
    assert g.shape == (4, 1, 8, 8)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder"):
        load_image_folder(tmp_path / "missing", 32)
    (tmp_path / "bad.png").write_bytes(b"xx")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable images"):
        load_image_folder(tmp_path, 32)
    with pytest.raises(ValueError, match="channels"):
        load_image_folder(tmp_path, 32, channels=2)


def test_npz_layouts_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=nhwc)
    x = load_npz(tmp_path / "a.npz", 32)
    assert x.shape == (5, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    np.savez(tmp_path / "b.npz", x=rng.random((4, 32, 32)).astype(np.float32))
    assert load_images(str(tmp_path / "b.npz"), 32).shape == (4, 1, 32, 32)
    np.savez(tmp_path / "c.npz", images=rng.random((4, 5)))
    with pytest.raises(ValueError, match="expected images"):
        load_npz(tmp_path / "c.npz", 32)
    np.savez(tmp_path / "d.npz", images=np.full((2, 8, 8), 3.0))
    with pytest.raises(ValueError, match=r"\[0, 1\] or \[-1, 1\]"):
        load_npz(tmp_path / "d.npz", 8)
    with pytest.raises(ValueError, match="key 'nope'"):
        load_npz(tmp_path / "a.npz", 8, key="nope")
    with pytest.raises(ValueError, match="data must be"):
        load_images("no_such_thing", 32)


def test_npz_channels_are_converted_like_pillow(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", images=rgb)
    gray = load_images(str(tmp_path / "rgb.npz"), 16, channels=1)
    assert gray.shape == (3, 1, 16, 16)
    ref = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in rgb])
    np.testing.assert_allclose(gray[:, 0].numpy(), ref / 127.5 - 1, atol=1.01 * 2 / 255)
    assert load_images(str(tmp_path / "rgb.npz"), 16, channels=3).shape == (3, 3, 16, 16)
    np.savez(tmp_path / "gray.npz", images=rgb[..., 0])
    x = load_npz(tmp_path / "gray.npz", 16, channels=3)
    assert x.shape == (3, 3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 2])
    np.testing.assert_allclose(x[:, 1].numpy(), rgb[..., 0] / 127.5 - 1, atol=1e-6)
    with pytest.raises(ValueError, match="channels must be 1"):
        load_npz(tmp_path / "gray.npz", 16, channels=2)


def test_broken_npz_is_an_error_naming_the_file(tmp_path):
    np.savez(tmp_path / "ok.npz", images=np.zeros((2, 8, 8), dtype=np.uint8))
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:100])
    (tmp_path / "text.npz").write_text("not an archive\n")
    for name in ("truncated.npz", "text.npz"):
        with pytest.raises(ValueError, match=rf"{name} is not a readable \.npz file"):
            load_npz(tmp_path / name, 8)


def test_missing_data_folder_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data: image folder not found: .*nofolder"):
        load_images(str(tmp_path / "nofolder"), 32)


def test_image_folder_is_lazy_uint8_and_skips_a_corrupt_file(tmp_path, monkeypatch):
    """Listing decodes nothing; an item is uint8 [C, S, S]; a corrupt file is skipped (its index
    gives the next readable image) with a warning naming it."""
    import wdist_apps.wgan.folder as folder

    _write_folder(tmp_path)
    decoded = []
    real_decode = folder.decode_image
    monkeypatch.setattr(folder, "decode_image", lambda p, *a: decoded.append(p.name)
                        or real_decode(p, *a))
    ds = folder.ImageFolder(tmp_path, 16, channels=3)
    assert len(ds) == 5 and decoded == []  # alpha, broken, gray, sub/flat, wide: none decoded
    x = ds[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 16, 16) and decoded == ["alpha.png"]
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*broken\.png"):
        y = ds[1]
    assert torch.equal(y, ds[2])  # broken.png -> the next file, gray.jpg
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known bad: not decoded, not warned again
        ds[1]
    assert decoded.count("broken.png") == 1


def test_folder_batches_convert_per_batch_and_are_seeded(tmp_path):
    from wdist_apps.wgan.folder import FolderBatches, ImageFolder

    rng = np.random.default_rng(0)
    for i in range(6):
        img = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    ds = ImageFolder(tmp_path, 12, channels=3)
    stream = FolderBatches(ds, 4, seed=3, workers=0)
    batches = [next(stream) for _ in range(3)]
    assert all(b.shape == (4, 3, 12, 12) and b.dtype == torch.float32 for b in batches)
    assert all(b.min() >= -1 and b.max() <= 1 for b in batches)
    stored = torch.stack([ds[i] for i in range(6)]).float() / 127.5 - 1
    for b in batches:  # every image of a batch is one of the folder's images
        assert all(any(torch.allclose(im, s) for s in stored) for im in b)
    resumed = FolderBatches(ds, 4, seed=3, workers=2, start=2)  # 2 worker processes, batch 2 on
    assert torch.equal(next(resumed), batches[2])
    flipped = FolderBatches(ds, 4, seed=3, workers=0, hflip=True)
    f0 = next(flipped)
    mirrored = [torch.equal(f, b.flip(-1)) and not torch.equal(f, b)
                for f, b in zip(f0, batches[0])]
    same = [torch.equal(f, b) for f, b in zip(f0, batches[0])]
    assert all(m or s for m, s in zip(mirrored, same))
    flips = sum(sum(torch.equal(f, b.flip(-1)) and not torch.equal(f, b)
                    for f, b in zip(next(flipped), bt)) for bt in batches[1:])
    assert 0 < flips + sum(mirrored) < 12  # about half of the 12 images are mirrored
