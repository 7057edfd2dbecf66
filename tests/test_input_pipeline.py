"""Tests for figs_tf.train.input_pipeline (tf.data pipelines over tfds and the offline files).

cifar10 and imagenet2012 run under `tfds.testing.mock_data` (random examples,
no files). Fashion-MNIST runs both ways: under the mock (the tfds path) and
on the real Debian files (the dataset's offline reader, selected by pointing
data_dir at an empty directory), where the true images are known.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from figs_tf.train import input_pipeline
from figs_tf.train.fashion_mnist import FILES, load_fashion_mnist

pytestmark = pytest.mark.tensorflow_only

requires_fashion_mnist_files = pytest.mark.skipif(
    not all(load_fashion_mnist(split, missing_ok=True) is not None for split in FILES),
    reason="needs the Fashion-MNIST files (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture
def offline_data_dir(tmp_path):
    """An empty tfds data_dir: tfds has nothing, so Fashion-MNIST uses the offline files."""
    return str(tmp_path / "no_tfds_data")


def _context(num_pipelines, pipeline_id, replicas):
    return tf.distribute.InputContext(
        num_input_pipelines=num_pipelines, input_pipeline_id=pipeline_id,
        num_replicas_in_sync=replicas)


def _collect(dataset, num_batches=None):
    """(images, labels, batch sizes) of the first num_batches batches (all if None)."""
    if num_batches is not None:
        dataset = dataset.take(num_batches)
    batches = [(images.numpy(), labels.numpy()) for images, labels in dataset]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return images, labels, [len(labels) for _, labels in batches]


def _fashion_mnist_pixels(normalised_images):
    """Undoes the normalisation: the uint8 pixels the images came from."""
    info = input_pipeline.dataset_info("fashion_mnist")
    mean, std = info.mean[0], info.std[0]
    return np.rint((normalised_images * std + mean) * 255.0).astype(np.uint8)


# --- dataset facts and argument checks -----------------------------------------


def test_dataset_info_has_the_published_sizes_and_input_shapes():
    expected = {
        "fashion_mnist": (10, {"train": 60000, "test": 10000}, "train", "test", (28, 28, 1)),
        "cifar10": (10, {"train": 50000, "test": 10000}, "train", "test", (32, 32, 3)),
        "imagenet2012": (1000, {"train": 1281167, "validation": 50000}, "train", "validation",
                         (224, 224, 3)),
    }
    for name, (classes, sizes, train_split, eval_split, shape) in expected.items():
        info = input_pipeline.dataset_info(name)
        assert (info.name, info.num_classes, info.num_examples) == (name, classes, sizes)
        assert (info.train_split, info.eval_split) == (train_split, eval_split)
        assert input_pipeline.input_shape(name) == shape
    assert input_pipeline.input_shape("imagenet2012", image_size=128) == (128, 128, 3)
    assert input_pipeline.input_shape("fashion_mnist", image_size=32) == (32, 32, 1)


@pytest.mark.parametrize("call", [
    lambda: input_pipeline.dataset_info("mnist"),
    lambda: input_pipeline.input_shape("mnist"),
    lambda: input_pipeline.num_examples("mnist", "train"),
    lambda: input_pipeline.make_dataset("mnist", "train", global_batch_size=8, training=True),
])
def test_unknown_dataset_error_names_it_and_lists_the_known_ones(call):
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    assert "'mnist'" in message
    for known in ("fashion_mnist", "cifar10", "imagenet2012"):
        assert known in message


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match=r"'validation'.*'train', 'test'"):
        input_pipeline.make_dataset("cifar10", "validation", global_batch_size=8, training=False)


def test_global_batch_not_divisible_by_replicas_is_a_clear_error():
    with pytest.raises(ValueError, match=r"global_batch_size=32 .* 3 replicas"):
        input_pipeline.make_dataset(
            "fashion_mnist", "train", global_batch_size=32, training=True,
            input_context=_context(num_pipelines=1, pipeline_id=0, replicas=3))


def test_cifar10_and_imagenet_not_prepared_say_how_to_prepare_them(tmp_path):
    empty_dir = str(tmp_path)
    with pytest.raises(input_pipeline.DatasetNotPreparedError) as error:
        input_pipeline.make_dataset(
            "cifar10", "train", global_batch_size=8, training=True, data_dir=empty_dir)
    assert f"tfds build cifar10 --data_dir={empty_dir}" in str(error.value)

    with pytest.raises(input_pipeline.DatasetNotPreparedError) as error:
        input_pipeline.make_dataset(
            "imagenet2012", "validation", global_batch_size=8, training=False, data_dir=empty_dir)
    message = str(error.value)
    assert "downloads/manual" in message
    assert "https://www.tensorflow.org/datasets/catalog/imagenet2012" in message


def test_num_examples_uses_the_published_sizes_without_tfds_metadata(tmp_path):
    assert input_pipeline.num_examples("cifar10", "train", data_dir=str(tmp_path)) == 50000
    assert input_pipeline.num_examples("imagenet2012", "validation", data_dir=str(tmp_path),
                                       max_examples=64) == 64
    assert input_pipeline.num_examples("fashion_mnist", "test", data_dir=str(tmp_path),
                                       max_examples=10**6) == 10000
    with tfds.testing.mock_data(num_examples=3):  # the mock has no split sizes
        assert input_pipeline.num_examples("imagenet2012", "train") == 1281167


# --- the tfds path, under tfds.testing.mock_data --------------------------------


@pytest.mark.parametrize("name, image_size, expected_shape", [
    ("fashion_mnist", None, (28, 28, 1)),
    ("cifar10", 40, (40, 40, 3)),
    ("imagenet2012", 48, (48, 48, 3)),
])
def test_tfds_batches_have_the_model_shapes_and_eval_reads_each_example_once(
        name, image_size, expected_shape):
    info = input_pipeline.dataset_info(name)
    with tfds.testing.mock_data(num_examples=7):
        train = input_pipeline.make_dataset(
            name, info.train_split, global_batch_size=4, training=True, image_size=image_size,
            drop_remainder=True)
        images, labels, sizes = _collect(train, num_batches=3)
        evaluation = input_pipeline.make_dataset(
            name, info.eval_split, global_batch_size=4, training=False, image_size=image_size)
        eval_images, eval_labels, eval_sizes = _collect(evaluation)
        capped = input_pipeline.make_dataset(
            name, info.eval_split, global_batch_size=4, training=False, image_size=image_size,
            max_examples=5)
        _, _, capped_sizes = _collect(capped)

    # Training repeats past the 7 examples; evaluation is one pass over them.
    # A real Fashion-MNIST (the fallback) would give 10000 evaluation examples:
    # 7 proves the pipeline read the mock through tfds.
    assert sizes == [4, 4, 4]
    assert eval_sizes == [4, 3]
    assert capped_sizes == [4, 1]
    for batch_images, batch_labels in ((images, labels), (eval_images, eval_labels)):
        assert batch_images.shape[1:] == expected_shape
        assert batch_images.dtype == np.float32 and batch_labels.dtype == np.int32
        assert np.all(np.isfinite(batch_images))
        assert 0 <= batch_labels.min() and batch_labels.max() < info.num_classes


def test_distribute_datasets_from_function_gets_per_replica_batches():
    strategy = tf.distribute.get_strategy()
    with tfds.testing.mock_data(num_examples=5):
        distributed = strategy.distribute_datasets_from_function(
            lambda context: input_pipeline.make_dataset(
                "cifar10", "train", global_batch_size=6, training=True, input_context=context,
                drop_remainder=True))
        images, labels = next(iter(distributed))
    assert images.shape == (6, 32, 32, 3) and labels.shape == (6,)


# --- the tfds path, on a tiny really prepared dataset ----------------------------

_TINY_CIFAR10_SIZES = {"train": 30, "test": 11}


class _TinyCifar10(tfds.image_classification.Cifar10, skip_registration=True):
    """tfds's cifar10 builder generating a few examples instead of downloading.

    Example i of a split has label i % 10 and every pixel equal to 8 * i, so
    the image says which example it is.
    """

    name = "cifar10"  # Writes where tfds.builder("cifar10", data_dir=...) reads.

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {split: self._tiny_examples(count) for split, count in _TINY_CIFAR10_SIZES.items()}

    def _tiny_examples(self, count):
        for index in range(count):
            image = np.full((32, 32, 3), 8 * index, dtype=np.uint8)
            yield index, {"id": f"example_{index}", "image": image, "label": index % 10}


@pytest.fixture(scope="module")
def tiny_cifar10_dir(tmp_path_factory):
    """A data_dir where tfds's own "cifar10" builder finds a prepared tiny dataset."""
    data_dir = str(tmp_path_factory.mktemp("tiny_tfds"))
    _TinyCifar10(data_dir=data_dir).download_and_prepare()
    return data_dir


def _cifar10_example_indices(normalised_images):
    """The example index each (unaugmented) tiny-cifar10 image was made from."""
    info = input_pipeline.dataset_info("cifar10")
    pixels = (normalised_images[:, 0, 0, 0] * info.std[0] + info.mean[0]) * 255.0
    return np.rint(pixels / 8.0).astype(int)


def test_prepared_tfds_counts_and_max_examples_come_from_the_prepared_data(tiny_cifar10_dir):
    assert input_pipeline.num_examples("cifar10", "train", data_dir=tiny_cifar10_dir) == 30
    assert input_pipeline.num_examples("cifar10", "test", data_dir=tiny_cifar10_dir,
                                       max_examples=5) == 5

    def eval_indices(max_examples):
        dataset = input_pipeline.make_dataset(
            "cifar10", "test", global_batch_size=4, training=False, max_examples=max_examples,
            data_dir=tiny_cifar10_dir)
        images, labels, _ = _collect(dataset)
        indices = _cifar10_example_indices(images)
        np.testing.assert_array_equal(labels, indices % 10)
        return indices

    everything = eval_indices(None)
    assert sorted(everything) == list(range(11))  # each example once, in tfds's file order
    np.testing.assert_array_equal(eval_indices(7), everything[:7])


@pytest.mark.parametrize("training", [False, True])
def test_prepared_tfds_sharding_is_disjoint_and_covers_everything(tiny_cifar10_dir, training):
    shards = []
    for pipeline_id in range(2):
        dataset = input_pipeline.make_dataset(
            "cifar10", "train", global_batch_size=4, training=training, augment=False,
            input_context=_context(num_pipelines=2, pipeline_id=pipeline_id, replicas=2),
            data_dir=tiny_cifar10_dir)
        if training:  # The first epoch of each share's repeated stream.
            dataset = dataset.unbatch().batch(15).take(1)
        images, _, sizes = _collect(dataset)
        if not training:
            assert sizes == [2] * 7 + [1]  # per-replica batches of 2
        shards.append(list(_cifar10_example_indices(images)))
    assert [len(shard) for shard in shards] == [15, 15]
    assert sorted(shards[0] + shards[1]) == list(range(30))


def test_prepared_tfds_training_order_follows_the_seed(tiny_cifar10_dir):
    def label_order(seed):
        dataset = input_pipeline.make_dataset(
            "cifar10", "train", global_batch_size=10, training=True, seed=seed,
            data_dir=tiny_cifar10_dir)
        return _collect(dataset, num_batches=6)[1]  # two epochs

    first = label_order(seed=4)
    np.testing.assert_array_equal(first, label_order(seed=4))
    assert not np.array_equal(first, label_order(seed=5))
    assert not np.array_equal(first[:30], first[30:])  # reshuffled every epoch


# --- the offline Fashion-MNIST path, on the real data ----------------------------


@requires_fashion_mnist_files
def test_offline_eval_pass_is_the_first_max_examples_in_order_once(offline_data_dir):
    true_images, true_labels = load_fashion_mnist("test")
    dataset = input_pipeline.make_dataset(
        "fashion_mnist", "test", global_batch_size=32, training=False, max_examples=100,
        data_dir=offline_data_dir)
    images, labels, sizes = _collect(dataset)
    assert sizes == [32, 32, 32, 4]
    np.testing.assert_array_equal(labels, true_labels[:100])
    np.testing.assert_array_equal(_fashion_mnist_pixels(images), true_images[:100])


@requires_fashion_mnist_files
def test_offline_normalisation_gives_zero_mean_unit_std(offline_data_dir):
    dataset = input_pipeline.make_dataset(
        "fashion_mnist", "test", global_batch_size=5000, training=False,
        data_dir=offline_data_dir)
    images, _, sizes = _collect(dataset)
    assert sizes == [5000, 5000]
    # The constants come from the training split; the test split's pixels have
    # mean 0.2868 and std 0.3525 (on [0, 1]), so ~0.002 and ~0.998 here.
    assert abs(images.mean()) < 0.01
    assert abs(images.std() - 1.0) < 0.01


@requires_fashion_mnist_files
def test_offline_image_size_resizes_bilinearly(offline_data_dir):
    true_images, _ = load_fashion_mnist("test")
    dataset = input_pipeline.make_dataset(
        "fashion_mnist", "test", global_batch_size=4, training=False, max_examples=4,
        image_size=56, data_dir=offline_data_dir)
    images, _, _ = _collect(dataset)
    assert images.shape == (4, 56, 56, 1)
    # Exact 2x bilinear upsampling (half-pixel centres) of the known images.
    expected = tf.image.resize(true_images[:4].astype(np.float32), [56, 56]).numpy()
    info = input_pipeline.dataset_info("fashion_mnist")
    expected = (expected / 255.0 - info.mean[0]) / info.std[0]
    np.testing.assert_allclose(images, expected, atol=1e-4)


@requires_fashion_mnist_files
@pytest.mark.parametrize("training", [False, True])
def test_offline_sharding_is_disjoint_and_covers_everything(offline_data_dir, training):
    true_images, true_labels = load_fashion_mnist("train")
    total = 101
    shards = []
    for pipeline_id in range(2):
        dataset = input_pipeline.make_dataset(
            "fashion_mnist", "train", global_batch_size=20, training=training,
            input_context=_context(num_pipelines=2, pipeline_id=pipeline_id, replicas=2),
            augment=False, max_examples=total, data_dir=offline_data_dir)
        # Per-replica batches of 10. Training: the first epoch of the repeated,
        # shuffled stream (the shuffle buffer holds the whole share).
        share_size = 51 - pipeline_id
        images, labels, sizes = _collect(dataset.unbatch().batch(share_size).take(1)
                                         if training else dataset)
        if not training:
            assert sizes == ([10] * 5 + [1] if pipeline_id == 0 else [10] * 5)
        assert len(labels) == share_size
        shards.append({(label, pixels.tobytes()) for label, pixels
                       in zip(labels, _fashion_mnist_pixels(images))})
        assert len(shards[-1]) == share_size  # no example twice within a share

    assert not shards[0] & shards[1]
    whole = {(label, pixels.tobytes()) for label, pixels
             in zip(true_labels[:total], true_images[:total])}
    assert shards[0] | shards[1] == whole


@requires_fashion_mnist_files
def test_offline_eval_with_drop_remainder_gives_equal_shares(offline_data_dir):
    batch_counts = []
    for pipeline_id in range(2):
        dataset = input_pipeline.make_dataset(
            "fashion_mnist", "test", global_batch_size=10, training=False, drop_remainder=True,
            input_context=_context(num_pipelines=2, pipeline_id=pipeline_id, replicas=2),
            max_examples=51, data_dir=offline_data_dir)
        _, _, sizes = _collect(dataset)
        batch_counts.append(sizes)
    # 51 examples -> 25 + 25 (one dropped) -> five full batches of 5 on both.
    assert batch_counts == [[5] * 5, [5] * 5]


@requires_fashion_mnist_files
def test_too_few_examples_for_the_pipelines_is_an_error(offline_data_dir):
    with pytest.raises(ValueError, match="input pipelines"):
        input_pipeline.make_dataset(
            "fashion_mnist", "test", global_batch_size=2, training=False, max_examples=1,
            input_context=_context(num_pipelines=2, pipeline_id=1, replicas=2),
            data_dir=offline_data_dir)


@requires_fashion_mnist_files
def test_offline_training_order_and_augmentation_follow_the_seed(offline_data_dir):
    def first_batches(seed, augment=True):
        dataset = input_pipeline.make_dataset(
            "fashion_mnist", "train", global_batch_size=16, training=True, seed=seed,
            augment=augment, max_examples=40, drop_remainder=True, data_dir=offline_data_dir)
        return _collect(dataset, num_batches=4)  # 64 > 40: runs into the second epoch

    images, labels, sizes = first_batches(seed=1)
    again_images, again_labels, _ = first_batches(seed=1)
    other_images, other_labels, _ = first_batches(seed=2)
    plain_images, plain_labels, _ = first_batches(seed=1, augment=False)

    assert sizes == [16] * 4
    np.testing.assert_array_equal(labels, again_labels)
    np.testing.assert_array_equal(images, again_images)
    assert not np.array_equal(labels, other_labels)
    # Augmentation draws its own randomness: the order stays that of the seed.
    np.testing.assert_array_equal(labels, plain_labels)
    assert not np.array_equal(images, plain_images)
    true_images, true_labels = load_fashion_mnist("train")
    assert sorted(plain_labels[:40]) == sorted(true_labels[:40])


@requires_fashion_mnist_files
def test_offline_augmentation_is_a_pad2_shift_and_maybe_a_flip(offline_data_dir):
    count = 12
    true_images, _ = load_fashion_mnist("train")
    dataset = input_pipeline.make_dataset(
        "fashion_mnist", "train", global_batch_size=count, training=True, seed=3,
        max_examples=count, data_dir=offline_data_dir)
    images, _, _ = _collect(dataset, num_batches=2)
    augmented = _fashion_mnist_pixels(images)[..., 0]

    # Every way to crop 28x28 out of the zero-padded (32x32) image, flipped or not.
    candidates = {}
    for index, image in enumerate(true_images[:count, :, :, 0]):
        padded = np.pad(image, 2)
        for top in range(5):
            for left in range(5):
                crop = padded[top:top + 28, left:left + 28]
                for flipped in (False, True):
                    variant = crop[:, ::-1] if flipped else crop
                    candidates.setdefault(variant.tobytes(), set()).add(
                        (index, top, left, flipped))
    matches = [candidates.get(image.tobytes()) for image in augmented]
    assert all(matches), "an augmented image is no pad-2 shift/flip of any original"
    # Not the identity: over 24 images some were shifted and some flipped.
    transforms = {next(iter(match))[1:] for match in matches}
    assert len(transforms) > 3
    assert any(flipped for _, _, flipped in transforms)


# --- ImageNet preprocessing ------------------------------------------------------


def _wavy_rgb_image(height, width):
    """Smooth but steep (~15 levels/pixel) patterns: a 1-pixel shift is visible."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [np.sin(2 * np.pi * x / 23), np.sin(2 * np.pi * y / 29),
                np.sin(2 * np.pi * (x + y) / 37)]
    return np.rint(128 + 100 * np.stack(channels, axis=-1)).astype(np.uint8)


def _jpeg(image):
    return tf.io.encode_jpeg(image, quality=100, chroma_downsampling=False)


def test_imagenet_eval_crop_is_the_centred_224_of_256_square():
    # 256x320: the crop is 224/256 of the shorter side = 224 pixels, at
    # ((256 - 224 + 1) // 2, (320 - 224 + 1) // 2) = (16, 48); no resize needed.
    image = _wavy_rgb_image(256, 320)
    cropped = input_pipeline.preprocess_imagenet_eval_image(_jpeg(image), 224).numpy()
    assert cropped.shape == (224, 224, 3) and cropped.dtype == np.float32
    expected = image[16:240, 48:272].astype(np.float32)
    # JPEG (quality 100, decoded with libjpeg's fast IDCT) is off by ~2.5 levels
    # on average; a crop one pixel off is off by ~9.
    assert np.abs(cropped - expected).mean() < 4.0
    for shifted in (image[17:241, 48:272], image[16:240, 49:273], image[15:239, 47:271]):
        assert np.abs(cropped - shifted.astype(np.float32)).mean() > 7.0

    # 301x401 at 160: crop int(160/192 * 301) = 250 at ((301-250+1)//2, (401-250+1)//2)
    # = (26, 76) (odd margins: the extra pixel goes to the top/left margin),
    # resized 250 -> 160.
    image = _wavy_rgb_image(301, 401)
    resized = input_pipeline.preprocess_imagenet_eval_image(_jpeg(image), 160).numpy()
    assert resized.shape == (160, 160, 3)

    def error_against_crop_at(top, left):
        crop = image[top:top + 250, left:left + 250].astype(np.float32)
        return np.abs(resized - tf.image.resize(crop, [160, 160]).numpy()).mean()

    assert error_against_crop_at(26, 76) < 4.0
    assert min(error_against_crop_at(25, 76), error_against_crop_at(26, 75)) > 7.0


def test_imagenet_train_crop_is_seeded_and_in_range():
    encoded = _jpeg(_wavy_rgb_image(120, 160))

    def crop(seed):
        return input_pipeline.preprocess_imagenet_train_image(
            encoded, 64, tf.constant(seed, tf.int64)).numpy()

    first = crop([5, 0])
    assert first.shape == (64, 64, 3) and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 255.0
    np.testing.assert_array_equal(first, crop([5, 0]))
    assert not np.array_equal(first, crop([6, 0]))


# --- resuming: the stream is a function of the position in it -------------------


def _stream(start_batch, num_batches, **kwargs):
    dataset = input_pipeline.make_dataset(global_batch_size=16, training=True, seed=5, drop_remainder=True,
                                          start_batch=start_batch, **kwargs)
    return _collect(dataset, num_batches=num_batches)


@pytest.mark.parametrize("start_batch", [1, 2, 3, 7])
@requires_fashion_mnist_files
def test_a_stream_started_at_a_batch_is_the_uninterrupted_stream_from_there(offline_data_dir, start_batch):
    # 40 examples a data epoch, 16 a batch: the starts fall inside data epochs 0, 0, 1 and 2.
    source = dict(name="fashion_mnist", split="train", max_examples=40, data_dir=offline_data_dir)
    whole_images, whole_labels, _ = _stream(0, start_batch + 4, **source)
    images, labels, _ = _stream(start_batch, 4, **source)
    np.testing.assert_array_equal(labels, whole_labels[16 * start_batch:])
    np.testing.assert_array_equal(images, whole_images[16 * start_batch:])  # augmentation included
    # each data epoch is a permutation of the 40 examples, and a new one each time
    plain_labels = _stream(0, 5, augment=False, **source)[1]
    true_labels = load_fashion_mnist("train")[1][:40]
    assert sorted(plain_labels[:40]) == sorted(plain_labels[40:80]) == sorted(true_labels)
    assert not np.array_equal(plain_labels[:40], plain_labels[40:80])


def test_a_streamed_dataset_started_at_a_batch_is_the_uninterrupted_stream_from_there():
    # ImageNet is streamed (windows of examples permuted per data epoch), here 20 mock examples.
    source = dict(name="imagenet2012", split="train", image_size=16, shuffle_buffer=8)
    with tfds.testing.mock_data(num_examples=20):
        whole_images, whole_labels, _ = _stream(0, 6, **source)
        images, labels, _ = _stream(3, 3, **source)  # position 48: data epoch 2, 8 examples in
    np.testing.assert_array_equal(labels, whole_labels[48:])
    np.testing.assert_array_equal(images, whole_images[48:])


def test_start_batch_is_for_training_streams():
    with pytest.raises(ValueError, match="start_batch is for training streams"):
        input_pipeline.make_dataset("fashion_mnist", "test", global_batch_size=8, training=False, start_batch=2)
    with pytest.raises(ValueError, match="start_batch must be a non-negative integer, got -1"):
        input_pipeline.make_dataset("fashion_mnist", "train", global_batch_size=8, training=True, start_batch=-1)


def test_a_dataset_is_a_row_of_the_table(monkeypatch, tmp_path):
    """The pipeline knows no dataset by name: a new row (here tfds's "mnist", not prepared in data_dir,
    with an offline reader of known arrays) is read, shared and preprocessed by what the row says."""
    images = np.arange(10 * 4 * 4, dtype=np.uint8).reshape(10, 4, 4, 1)
    labels = np.arange(10) % 3
    row = input_pipeline.DatasetInfo(
        "mnist", 3, 4, 1, "train", "test", {"train": 10, "test": 10}, mean=(0.0,), std=(2.0,), scale=1.0,
        train_image=lambda image, size, seed: tf.cast(image, tf.float32) + 1000.0,
        eval_image=lambda image, size: tf.cast(image, tf.float32), offline=lambda split: (images, labels))
    monkeypatch.setitem(input_pipeline.DATASETS, "mnist", row)
    evaluation = input_pipeline.make_dataset(
        "mnist", "test", global_batch_size=4, training=False, data_dir=str(tmp_path),
        input_context=_context(num_pipelines=2, pipeline_id=1, replicas=2))
    eval_images, eval_labels, sizes = _collect(evaluation)
    assert sizes == [2, 2, 1]  # the second of tfds.even_splits's 5 + 5
    np.testing.assert_array_equal(eval_images, images[5:] / 2.0)
    np.testing.assert_array_equal(eval_labels, labels[5:])
    train_images, train_labels, _ = _collect(input_pipeline.make_dataset(
        "mnist", "train", global_batch_size=5, training=True, data_dir=str(tmp_path)), num_batches=2)
    assert sorted(train_labels) == sorted(labels)  # one data epoch
    assert train_images.min() >= 500.0  # augmented by the row's train_image


def test_not_prepared_fashion_mnist_without_files_or_download_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("FIGS_FASHION_MNIST_DIR", str(tmp_path / "no_files"))
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda self, **kwargs: (_ for _ in ()).throw(ConnectionError("no internet")))
    with pytest.raises(input_pipeline.DatasetNotPreparedError) as error:
        input_pipeline.make_dataset("fashion_mnist", "test", global_batch_size=8, training=False,
                                    data_dir=str(tmp_path))
    message = str(error.value)
    for fix in ("apt-get install dataset-fashion-mnist", "FIGS_FASHION_MNIST_DIR", "no internet",
                f"tfds build fashion_mnist --data_dir={tmp_path}"):
        assert fix in message
