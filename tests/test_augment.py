"""Training augmentation: masks follow images, 3D rotates about z, draws per worker and epoch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, SequentialSampler

from core.config import DataConfig
from core.data.augment import Augmenter, augment_for, augmentation
from core.data.datamodule import ArrayDataModule, ArrayDataset
from core.data.sampling import EpochTagged


def _blobs(n: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """n identical images (n, 1, *shape) whose bright square is also the mask (n, *shape)."""
    mask = np.zeros(shape, np.uint8)
    mask[tuple(slice(s // 4, s // 2 + 2) for s in shape)] = 1
    x = np.repeat(mask[None, None].astype(np.float32), n, axis=0)
    return x, np.repeat(mask[None], n, axis=0)


def _loader(dataset: ArrayDataset, *, workers: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=1, sampler=EpochTagged(SequentialSampler(dataset)),
                      num_workers=workers, persistent_workers=workers > 0, generator=generator)


def _epochs(loader: DataLoader, n: int) -> list[list[np.ndarray]]:
    return [[x.numpy().copy() for x, _ in loader] for _ in range(n)]


def test_a_mask_follows_its_image_and_stays_binary():
    x, y = _blobs(1, (32, 32))
    augmenter = augment_for(DataConfig(augment=True), sample_shape=x.shape[1:], label_shape=y.shape[1:])
    assert augmenter is not None and augmenter.with_mask
    changed = 0
    for epoch in range(6):
        image, mask = augmenter(x[0].copy(), y[0].copy(), epoch=epoch)
        assert image.shape == (1, 32, 32) and mask.shape == (32, 32) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        agree = ((image[0] > 0.5) == (mask == 1)).mean()
        assert agree > 0.97, f"mask left its image at epoch {epoch}: {agree:.3f} of pixels agree"
        changed += int(not np.array_equal(mask, y[0]))
    assert changed >= 5  # the mask really moved with the image


def test_batches_keep_the_label_shapes():
    x = np.zeros((4, 1, 8, 8), np.float32)
    for y, shape in ((np.array([0, 1, 0, 1]), (4,)), (np.zeros((4, 8, 8), np.uint8), (4, 8, 8))):
        augmenter = augment_for(DataConfig(augment=True), sample_shape=x.shape[1:],
                                label_shape=y.shape[1:])
        loader = DataLoader(ArrayDataset(x, y, augment=augmenter), batch_size=4,
                            sampler=EpochTagged(SequentialSampler(range(4))))
        assert next(iter(loader))[1].shape == shape


def test_class_labels_are_left_alone_and_off_means_none():
    x = np.random.default_rng(0).random((1, 8, 16, 16), dtype=np.float32)
    augmenter = augment_for(DataConfig(augment=True), sample_shape=x.shape, label_shape=())
    image, label = augmenter(x, np.array(1), epoch=0)
    assert image.shape == x.shape and not np.allclose(image, x) and int(label) == 1
    assert augment_for(DataConfig(augment=False), sample_shape=x.shape, label_shape=()) is None


def test_3d_rotation_is_in_the_y_x_plane_only():
    # each z slice holds one value: a rotation about z keeps it, a tilt across z would mix slices
    x = np.broadcast_to(np.arange(8, dtype=np.float32)[None, :, None, None], (1, 8, 24, 24)).copy()
    y = np.zeros((8, 24, 24), np.uint8)
    y[:, 3:9, 14:22] = 1  # an off-centre column: the rotation moves it within each slice
    pipeline = augmentation((8, 24, 24), with_mask=True, flip=False, max_offset=0.0, max_scale=0.0,
                            max_degrees=40.0, noise_std=0.0)
    augmenter = Augmenter(pipeline, with_mask=True)
    moved = 0
    for epoch in range(4):
        image, mask = augmenter(x, y, epoch=epoch)
        np.testing.assert_allclose(image[0].std(axis=(1, 2)), 0.0, atol=1e-5)
        np.testing.assert_allclose(image[0].mean(axis=(1, 2)), np.arange(8), atol=1e-4)
        assert all(np.array_equal(mask[0], mask[k]) for k in range(8))
        moved += int(not np.array_equal(mask, y))
    assert moved >= 3


def _augmented(x: np.ndarray, y: np.ndarray) -> ArrayDataset:
    """A fresh augmenting dataset over ``x``, ``y`` (a new one per loader, as a resumed run makes)."""
    return ArrayDataset(x, y, augment=augment_for(DataConfig(augment=True), sample_shape=x.shape[1:],
                                                  label_shape=y.shape[1:]))


@pytest.mark.parametrize("workers", [0, 2])
def test_draws_differ_across_epochs_and_repeat_for_a_seed(workers):
    x, y = _blobs(4, (32, 32))
    make = lambda: _augmented(x, y)  # noqa: E731
    torch.manual_seed(7)
    first = _epochs(_loader(make(), workers=workers, seed=7), 2)
    torch.manual_seed(7)
    again = _epochs(_loader(make(), workers=workers, seed=7), 2)
    for a, b in zip(first, again):
        assert all(np.array_equal(u, v) for u, v in zip(a, b)), "same seed, other draws"
    assert not any(np.allclose(u, v) for u, v in zip(first[0], first[1])), "two epochs drew alike"


def test_two_workers_draw_differently():
    # 2 workers each take every other batch; the same image must not get the same draws
    x, y = _blobs(4, (32, 32))
    dataset = ArrayDataset(x, y, augment=augment_for(DataConfig(augment=True),
                                                     sample_shape=x.shape[1:], label_shape=y.shape[1:]))
    batches = _epochs(_loader(dataset, workers=2, seed=3), 1)[0]
    assert not np.allclose(batches[0], batches[1]), "worker 0 and worker 1 drew alike"
    assert not np.allclose(batches[2], batches[3])


def test_the_datamodule_augments_train_only():
    x, y = _blobs(6, (16, 16))
    arrays = {f"{s}/{k}": v for s in ("train", "val") for k, v in (("x", x), ("y", y))}
    augmenter = augment_for(DataConfig(augment=True), sample_shape=x.shape[1:], label_shape=y.shape[1:])
    data = ArrayDataModule(arrays, batch_size=6, augment=augmenter, seed=0)
    val_x, _ = next(iter(data.val_dataloader()))
    train_x, _ = next(iter(data.train_dataloader()))
    assert torch.equal(val_x, torch.from_numpy(x))
    assert not torch.allclose(train_x, torch.from_numpy(x))


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epochs_draws_depend_on_the_epoch_not_on_history(workers):
    # a run resumed at epoch 1 draws what the uninterrupted run drew at epoch 1
    x, y = _blobs(4, (32, 32))
    make = lambda: _augmented(x, y)  # noqa: E731
    torch.manual_seed(5)
    straight = _epochs(_loader(make(), workers=workers, seed=5), 2)[1]
    torch.manual_seed(5)
    resumed_loader = _loader(make(), workers=workers, seed=5)
    resumed_loader.sampler.set_epoch(1)
    resumed = _epochs(resumed_loader, 1)[0]
    assert all(np.array_equal(u, v) for u, v in zip(straight, resumed))
