"""Data tasks and the user-file loaders of apps/wdgrl."""

import numpy as np
import pytest

from wdist_apps.wdgrl.data import (
    load_features,
    make_digits_task,
    make_files_task,
    make_moons_task,
    make_task,
    rotate,
)


def test_rotate_is_a_rotation_about_the_center():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    c = np.array([0.5, 0.25])
    R = rotate(X, 30.0, c)
    np.testing.assert_allclose(np.linalg.norm(R - c, axis=1), np.linalg.norm(X - c, axis=1))
    np.testing.assert_allclose(rotate(rotate(X, 90.0, c), 90.0, c), 2 * c - X, atol=1e-12)


def test_moons_task_target_is_rotated_source_distribution():
    t = make_moons_task(90.0, n_source=400, n_target=400)
    assert t.Xs.shape == (400, 2) and t.Xt.shape == (400, 2) and t.Xt_test.shape == (400, 2)
    assert t.Xs.dtype == np.float32 and t.ys.dtype == np.int64
    # Moons are wider than tall; rotating by 90° swaps the spreads.
    assert t.Xs[:, 0].std() > 1.5 * t.Xs[:, 1].std()
    assert t.Xt[:, 1].std() > 1.5 * t.Xt[:, 0].std()
    assert make_moons_task(0.0).Xt.std(0) == pytest.approx(make_moons_task(0.0).Xs.std(0), rel=0.1)


@pytest.mark.parametrize("name", ["mnist_digits", "digits_mnist", "synth_mnist"])
def test_digit_tasks_share_a_16x16_frame_and_hold_out_target(name):
    t = make_digits_task(name)
    assert t.Xs.shape[1:] == t.Xt.shape[1:] == t.Xt_test.shape[1:] == (1, 16, 16)
    assert 0.0 <= t.Xs.min() and t.Xs.max() <= 1.0 and 0.0 <= t.Xt.min() and t.Xt.max() <= 1.0
    assert set(np.unique(t.ys)) == set(range(10)) == set(np.unique(t.yt_test))
    # adaptation and test target sets are disjoint samples
    flat = {r.tobytes() for r in t.Xt}
    assert not any(r.tobytes() in flat for r in t.Xt_test)


def test_mnistm_is_colour_and_differs_from_mnist():
    t = make_digits_task("mnist_mnistm")
    assert t.Xs.shape[1:] == t.Xt.shape[1:] == (3, 28, 28)
    np.testing.assert_array_equal(t.Xs[:, 0], t.Xs[:, 1])  # source: grey replicated
    assert np.abs(t.Xt[:, 0] - t.Xt[:, 1]).mean() > 0.01  # target: real colour
    assert t.Xt.mean() > t.Xs.mean() + 0.1  # photo backgrounds


def test_load_features_npz_and_csv_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.integers(0, 2, 20)
    np.savez(tmp_path / "s.npz", X=X, y=y)
    Xa, ya = load_features(tmp_path / "s.npz")
    np.testing.assert_array_equal(Xa, X)
    np.testing.assert_array_equal(ya, y)
    lines = ["f0,label,f1,f2"] + [f"{a},{b},{c},{d}" for (a, c, d), b in zip(X, y)]
    (tmp_path / "t.csv").write_text("\n".join(lines))
    Xc, yc = load_features(tmp_path / "t.csv")
    np.testing.assert_allclose(Xc, X, rtol=1e-6)
    np.testing.assert_array_equal(yc, y)
    np.savez(tmp_path / "u.npz", X=X)  # unlabelled target
    assert load_features(tmp_path / "u.npz")[1] is None
    task = make_files_task(tmp_path / "s.npz", tmp_path / "u.npz")
    assert len(task.Xt) == 20 and not task.labelled_target  # adapts on all of an unlabelled target


def test_files_task_keeps_any_label_values(tmp_path):
    """-1/+1 (sentiment) and string labels are classes like any other, not "unlabelled"."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    for y in (np.where(X[:, 0] > 0, 1, -1), np.where(X[:, 0] > 0, "pos", "neg")):
        np.savez(tmp_path / "s.npz", X=X, y=y)
        np.savez(tmp_path / "t.npz", X=X + 0.1, y=y)
        task = make_files_task(tmp_path / "s.npz", tmp_path / "t.npz")
        assert task.labelled_target and len(task.Xt) == len(task.Xt_test) == 20
        assert set(task.yt_test.tolist()) <= set(y.tolist())
    np.savez(tmp_path / "s.npz", X=X, y=np.where(X[:, 0] > 0, 1, -1))
    np.savez(tmp_path / "t.npz", X=X, y=np.where(X[:, 0] > 0, 1, 2))
    with pytest.raises(ValueError, match=r"target labels \[2\] never occur in the source"):
        make_files_task(tmp_path / "s.npz", tmp_path / "t.npz")


def test_load_features_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_features(tmp_path / "missing.npz")
    np.savez(tmp_path / "a.npz", Z=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="'X'"):
        load_features(tmp_path / "a.npz")
    (tmp_path / "b.csv").write_text("f0,label\n1.0,x\n")
    with pytest.raises(ValueError, match="numeric"):
        load_features(tmp_path / "b.csv")
    (tmp_path / "c.txt").write_text("1")
    with pytest.raises(ValueError, match=".npz or .csv"):
        load_features(tmp_path / "c.txt")
    np.savez(tmp_path / "d.npz", X=np.zeros((3, 2)), y=np.array([0.5, 1, 0]))
    with pytest.raises(ValueError, match="integers"):
        load_features(tmp_path / "d.npz")
    np.savez(tmp_path / "s.npz", X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    np.savez(tmp_path / "t.npz", X=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="must match"):
        make_files_task(tmp_path / "s.npz", tmp_path / "t.npz")
    with pytest.raises(ValueError, match="source file must hold labels"):
        make_files_task(tmp_path / "t.npz", tmp_path / "t.npz")
    with pytest.raises(ValueError, match="task must be one of"):
        make_task("svhn")


def test_unreadable_or_bad_feature_files_name_the_file_and_row(tmp_path):
    from wdist_apps.wdgrl.data import load_features

    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(2000))
    for path in (empty, noise):
        with pytest.raises(ValueError, match=rf"{path.name}: not a readable \.npz feature file"):
            load_features(path)
    X = np.ones((5, 3))
    X[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", X=X)
    with pytest.raises(ValueError, match=r"nan\.npz: row 3 holds a NaN or infinite feature"):
        load_features(tmp_path / "nan.npz")
    (tmp_path / "nan.csv").write_text("a,b,label\n1,2,0\n3,nan,1\n")
    with pytest.raises(ValueError, match=r"nan\.csv: line 3 holds a NaN"):
        load_features(tmp_path / "nan.csv")
    np.savez(tmp_path / "huge.npz", X=np.full((4, 2), 1e30))
    with pytest.raises(ValueError, match=r"huge\.npz: row 0 holds a feature of magnitude 1e\+30"):
        load_features(tmp_path / "huge.npz")
