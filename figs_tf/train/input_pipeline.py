"""tf.data input pipelines for Fashion-MNIST, CIFAR-10 and ImageNet (ILSVRC 2012).

Every pipeline yields ``(images, labels)`` batches: float32 NHWC images,
normalised per channel with the dataset's mean and standard deviation, and
int32 labels. Training pipelines shuffle (seeded), augment, and repeat
forever; evaluation pipelines read the split once, in order.

Example::

    import tensorflow as tf
    from figs_tf.train import input_pipeline

    strategy = tf.distribute.MirroredStrategy()
    train_data = strategy.distribute_datasets_from_function(
        lambda context: input_pipeline.make_dataset(
            "cifar10", "train", global_batch_size=256, training=True,
            input_context=context, data_dir="gs://my-bucket/tensorflow_datasets"))
    eval_data = input_pipeline.make_dataset(
        "cifar10", "test", global_batch_size=256, training=False)

    info = input_pipeline.dataset_info("cifar10")
    steps_per_epoch = input_pipeline.num_examples("cifar10", info.train_split) // 256
    model = build_model(input_pipeline.input_shape("cifar10"), info.num_classes)
    model.fit(train_data, steps_per_epoch=steps_per_epoch, epochs=10,
              validation_data=eval_data)

Where the data comes from:

- ``cifar10`` and ``imagenet2012``: a dataset prepared by
  ``tensorflow_datasets`` in ``data_dir`` (tfds's default directory if None;
  ``gs://`` paths work). If it is not prepared, :class:`DatasetNotPreparedError`
  says how to prepare it.
- ``fashion_mnist``: the tfds dataset if tfds can serve it (prepared data, or
  ``tfds.testing.mock_data`` in tests); otherwise the numpy arrays of
  :func:`figs_tf.train.fashion_mnist.load_fashion_mnist`, which reads the Debian IDX files
  offline and only downloads with tfds as the last resort.

Sharding: with an ``input_context`` of N input pipelines, pipeline ``i`` reads
the ``i``-th of N contiguous, disjoint example ranges that together cover the
(first ``max_examples`` examples of the) split, sized like
``tfds.even_splits``: sizes differ by at most one, the first ones get the extra
examples. With tfds the range is a split slice (``"train[12500:25000]"``), so
each pipeline reads only its own records, however few files the split has
(CIFAR-10 has too few files for ``tfds.ReadConfig(input_context=...)``'s
per-file sharding to serve 8 hosts, and per-file shards differ in size). On the
numpy path it is an array slice. Evaluation with ``drop_remainder=True`` makes
all ranges the same size (dropping fewer than N examples at the end), so every
host runs the same number of evaluation steps.

Randomness and resuming: the training stream of a pipeline is a function of
``seed`` and the position in it, so that a run resumed at step ``s`` reads
exactly what the uninterrupted run read from step ``s`` on (``start_batch``;
nothing about the stream needs to be checkpointed). A share held in memory
(Fashion-MNIST, CIFAR-10 and any tfds dataset but ImageNet: at most 150 MB)
is shuffled by ``Dataset.shuffle(seed=seed, reshuffle_each_iteration=True)``,
a new order every data epoch, run on the indices of the share: resuming
replays the indices up to the position (about a microsecond each), then
reads only the examples from there. ImageNet is streamed:
its files are read in one seeded order, and in data epoch ``k`` every window
of 10,000 consecutive examples is permuted with a seed drawn from ``(seed,
pipeline id, k, window)`` (``Dataset.shuffle`` cannot take a seed per epoch
under a global seed); resuming inside a data epoch reads (without decoding)
the records before the position in it.
Augmentation uses stateless random ops seeded per example from ``seed``, the
input pipeline id and the example's position in the stream. So the same seed
gives the same batches, and different hosts augment differently.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from figs_tf.train import errors
from figs_tf.train import fashion_mnist

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "IMAGENET_CROP_PADDING",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KNOWN_DATASETS",
    "dataset_info",
    "input_shape",
    "make_dataset",
    "normalize_images",
    "num_examples",
    "preprocess_imagenet_eval_image",
    "preprocess_imagenet_train_image",
]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and a training loop need to know about a dataset.

    Attributes:
      name: The tfds name, e.g. ``"cifar10"``.
      num_classes: Number of label classes.
      image_size: Height and width of the images the model sees by default.
      channels: Colour channels (1 or 3).
      train_split: The split to train on.
      eval_split: The split to evaluate on.
      num_examples: ``{split: number of examples}``, the published split sizes.
    """

    name: str
    num_classes: int
    image_size: int
    channels: int
    train_split: str
    eval_split: str
    num_examples: dict


_DATASET_INFOS = {
    info.name: info
    for info in (
        DatasetInfo(
            name="fashion_mnist", num_classes=10, image_size=28, channels=1,
            train_split="train", eval_split="test",
            num_examples={"train": 60000, "test": 10000},
        ),
        DatasetInfo(
            name="cifar10", num_classes=10, image_size=32, channels=3,
            train_split="train", eval_split="test",
            num_examples={"train": 50000, "test": 10000},
        ),
        DatasetInfo(
            name="imagenet2012", num_classes=1000, image_size=224, channels=3,
            train_split="train", eval_split="validation",
            num_examples={"train": 1281167, "validation": 50000},
        ),
    )
}

#: Names accepted by every function of this module.
KNOWN_DATASETS = tuple(_DATASET_INFOS)

# Per-channel mean and standard deviation over every pixel of the training
# split, on pixels scaled to [0, 1].
# Fashion-MNIST: computed here from the 60000 training images (Debian
# `dataset-fashion-mnist` IDX files, identical to the tfds data).
FASHION_MNIST_MEAN = (0.28604060,)
FASHION_MNIST_STD = (0.35302424,)
# CIFAR-10: the widely published values for the 50000 training images (e.g. the
# "Deep Learning with PyTorch" book computes 0.4915/0.4823/0.4468 and
# 0.2470/0.2435/0.2616). Not the often-copied (0.2023, 0.1994, 0.2010): that is
# the mean of per-image standard deviations, which leaves the data at std ~1.2.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# ImageNet: the standard RGB mean/std (torchvision's 0.485/0.456/0.406 and
# 0.229/0.224/0.225) on 0..255 pixels, as used by ResNet reference pipelines.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# (mean, std, scale): images are divided by `scale` before normalising.
_NORMALIZATION = {
    "fashion_mnist": (FASHION_MNIST_MEAN, FASHION_MNIST_STD, 255.0),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD, 255.0),
    "imagenet2012": (IMAGENET_MEAN, IMAGENET_STD, 1.0),
}

# Zero padding, in pixels, before the random crop back to the native size.
_RANDOM_CROP_PADDING = {"fashion_mnist": 2, "cifar10": 4}

#: The ImageNet eval crop keeps image_size / (image_size + 32) of the shorter
#: side (224 / 256 at the default size), as in the reference ResNet pipeline.
IMAGENET_CROP_PADDING = 32

# Inception-style `distort_color` strengths: moderate, so that small networks
# still learn colour.
_BRIGHTNESS_MAX_DELTA = 32.0 / 255.0
_SATURATION_RANGE = (0.5, 1.5)
_CONTRAST_RANGE = (0.5, 1.5)

# ImageNet examples are ~110 kB of JPEG each: 10000 of them are ~1 GB of shuffle
# buffer. The small datasets are shuffled over their whole share (in memory).
_IMAGENET_SHUFFLE_BUFFER = 10_000

_IMAGENET_DOCS = "https://www.tensorflow.org/datasets/catalog/imagenet2012"

# The end of an endless stream of positions (tf.data.Dataset.range needs one).
_ENDLESS = np.iinfo(np.int64).max


class DatasetNotPreparedError(errors.UserError, RuntimeError):
    """A tfds dataset is not prepared in ``data_dir``; the message says how to fix it (the binaries:
    a user error, exit status 2)."""


# ---------------------------------------------------------------------------
# Dataset facts
# ---------------------------------------------------------------------------


def dataset_info(name: str) -> DatasetInfo:
    """Returns the :class:`DatasetInfo` of ``name``.

    Raises:
      ValueError: ``name`` is not one of :data:`KNOWN_DATASETS`.

    Example::

        dataset_info("cifar10").num_classes  # 10
    """
    try:
        return _DATASET_INFOS[name]
    except (KeyError, TypeError):
        known = ", ".join(repr(known_name) for known_name in KNOWN_DATASETS)
        raise ValueError(f"Unknown dataset {name!r}; known datasets: {known}") from None


def input_shape(name: str, image_size: int | None = None) -> tuple:
    """Returns the ``(height, width, channels)`` of the images the model sees.

    Args:
      name: A dataset name, e.g. ``"imagenet2012"``.
      image_size: The size images are resized (or cropped) to; None keeps the
        dataset's default (28, 32 or 224).

    Example::

        input_shape("fashion_mnist")                 # (28, 28, 1)
        input_shape("imagenet2012", image_size=128)  # (128, 128, 3)
    """
    info = dataset_info(name)
    size = _resolve_image_size(info, image_size)
    return (size, size, info.channels)


def num_examples(
    name: str, split: str, data_dir: str | None = None, max_examples: int | None = None
) -> int:
    """Returns the number of examples in ``split``, at most ``max_examples``.

    The count is the prepared tfds dataset's own when ``data_dir`` has one,
    else the published size (which is also what the Fashion-MNIST IDX files
    hold, and what ``tfds.testing.mock_data`` leaves to us: it has no split
    metadata). It is the whole split's count, not one input pipeline's share.

    Example::

        num_examples("cifar10", "train")                    # 50000
        num_examples("cifar10", "train", max_examples=512)  # 512
    """
    info = dataset_info(name)
    _check_split(info, split)
    _check_optional_positive_int("max_examples", max_examples)
    count = None
    try:
        with fashion_mnist.asking_tfds_quietly():
            builder = tfds.builder(name, data_dir=data_dir)
            if builder.is_prepared():
                count = _prepared_split_size(builder, split)
    except Exception:  # Unreadable data_dir, tfds import problems: use the table.
        count = None
    if count is None:
        count = info.num_examples[split]
    if max_examples is not None:
        count = min(count, max_examples)
    return count


def _prepared_split_size(builder, split: str) -> int | None:
    try:
        count = int(builder.info.splits[split].num_examples)
    except Exception:  # No split metadata (e.g. under tfds.testing.mock_data).
        return None
    return count if count > 0 else None


def _check_split(info: DatasetInfo, split: str) -> None:
    if split not in info.num_examples:
        known = ", ".join(repr(known_split) for known_split in info.num_examples)
        raise ValueError(f"Unknown split {split!r} of {info.name!r}; known splits: {known}")


def _check_optional_positive_int(argument_name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{argument_name} must be None or a positive integer, got {value!r}")


def _resolve_image_size(info: DatasetInfo, image_size: int | None) -> int:
    _check_optional_positive_int("image_size", image_size)
    return int(image_size) if image_size is not None else info.image_size


# ---------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------


def make_dataset(
    name: str,
    split: str,
    *,
    global_batch_size: int,
    training: bool,
    input_context: tf.distribute.InputContext | None = None,
    data_dir: str | None = None,
    image_size: int | None = None,
    augment: bool = True,
    drop_remainder: bool = False,
    seed: int = 0,
    max_examples: int | None = None,
    shuffle_buffer: int | None = None,
    start_batch: int = 0,
) -> tf.data.Dataset:
    """Builds the batched ``tf.data.Dataset`` of one input pipeline.

    Args:
      name: ``"fashion_mnist"``, ``"cifar10"`` or ``"imagenet2012"``.
      split: A split of the dataset, e.g. ``dataset_info(name).train_split``.
      global_batch_size: Examples per step over all replicas. Each pipeline
        batches ``input_context.get_per_replica_batch_size(global_batch_size)``
        examples when ``input_context`` is given, else ``global_batch_size``.
      training: True: shuffle, augment (if ``augment``) and repeat forever.
        False: one pass over the data in order, no augmentation.
      input_context: The ``tf.distribute.InputContext`` that
        ``strategy.distribute_datasets_from_function`` passes; this pipeline
        then reads only its own disjoint share of the examples.
      data_dir: tfds data directory (local or ``gs://``); None: tfds's default.
      image_size: Height and width of the output images; None: the dataset's
        default. Fashion-MNIST and CIFAR-10 images are resized (bilinear);
        ImageNet crops are resized to it.
      augment: Augment training data (ignored when ``training`` is False).
        Fashion-MNIST: pad-2 random crop and horizontal flip; CIFAR-10: pad-4
        random crop and flip; ImageNet: Inception-style random-area crop,
        flip and colour jitter.
      drop_remainder: Drop the last, smaller batch (TPUs need every batch
        full). For evaluation it also makes all pipelines' shares equal.
      seed: Seed of the shuffle order and the augmentation.
      max_examples: Use only the first ``max_examples`` examples of the split
        (for small runs and tests); None: all.
      shuffle_buffer: Shuffle buffer size of a dataset held in memory (None:
        the whole share), examples per shuffled window of a streamed one
        (ImageNet; None: 10000).
      start_batch: Training only: start this pipeline's stream after this
        many of its batches, as a resumed run does; the batches are those the
        stream from 0 would give from there on.

    Returns:
      A dataset of ``(images, labels)``: float32 images of shape
      ``(batch, image_size, image_size, channels)`` and int32 labels of shape
      ``(batch,)``.

    Raises:
      ValueError: unknown dataset or split, a global batch size that does not
        split evenly over ``input_context.num_replicas_in_sync`` replicas, or
        ``max_examples`` too small to give every pipeline an example.
      DatasetNotPreparedError: CIFAR-10 or ImageNet is not prepared in
        ``data_dir``.

    Example::

        eval_data = make_dataset("fashion_mnist", "test", global_batch_size=100,
                                 training=False, max_examples=1000)
        for images, labels in eval_data.take(1):
            images.shape  # (100, 28, 28, 1)
    """
    info = dataset_info(name)
    _check_split(info, split)
    _check_optional_positive_int("max_examples", max_examples)
    _check_optional_positive_int("shuffle_buffer", shuffle_buffer)
    if isinstance(start_batch, bool) or not isinstance(start_batch, (int, np.integer)) or start_batch < 0:
        raise ValueError(f"start_batch must be a non-negative integer, got {start_batch!r}")
    if start_batch and not training:
        raise ValueError("start_batch is for training streams; evaluation reads its split once from the start")
    output_size = _resolve_image_size(info, image_size)
    batch_size = _per_pipeline_batch_size(global_batch_size, input_context)
    num_pipelines, pipeline_id = _pipeline_position(input_context)
    # Equal shares for evaluation with full batches only: then every host runs
    # the same number of steps. Training repeats, so unequal shares are harmless.
    equal_shares = drop_remainder and not training

    if name == "fashion_mnist":
        source = _read_fashion_mnist(
            split, data_dir, max_examples, num_pipelines, pipeline_id, equal_shares, training, seed)
    else:
        source = _read_prepared_tfds(
            info, split, data_dir, max_examples, num_pipelines, pipeline_id, equal_shares, training, seed)

    preprocess = _make_preprocess_fn(info, output_size, augment=training and augment)
    if training:
        stream_seed = tf.constant([seed, pipeline_id], dtype=tf.int64)
        start = int(start_batch) * batch_size
        if isinstance(source, InMemory):
            examples = _in_memory_stream(source, seed, start, shuffle_buffer or len(source))
        else:
            examples = _shuffled_stream(source, stream_seed, start,
                                        shuffle_buffer or _IMAGENET_SHUFFLE_BUFFER)

        # The position in the stream seeds each example's augmentation:
        # deterministic given the seed, and new in every epoch.
        def preprocess_with_seed(position, example):
            image, label = example
            example_seed = tf.random.experimental.stateless_fold_in(stream_seed, position)
            return preprocess(image, label, example_seed)

        examples = examples.map(preprocess_with_seed, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        examples = source.examples() if isinstance(source, InMemory) else source.dataset
        examples = examples.map(
            lambda image, label: preprocess(image, label, None),
            num_parallel_calls=tf.data.AUTOTUNE)

    examples = examples.batch(batch_size, drop_remainder=drop_remainder)
    return examples.prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class InMemory:
    """A pipeline's share as arrays: uint8 images (N, H, W, C) and labels (N,)."""
    images: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    def examples(self) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((self.images, self.labels))


@dataclasses.dataclass(frozen=True)
class Streamed:
    """A pipeline's share as a dataset of (image, label) read in one fixed order."""
    dataset: tf.data.Dataset
    size: int

    def __len__(self):
        return self.size


def _in_memory_stream(source: InMemory, seed: int, start: int, buffer: int) -> tf.data.Dataset:
    """(position, (image, label)) from `start` on: tf.data's seeded shuffle, reshuffled every epoch,
    run on the indices of the share, so that skipping to `start` replays indices, not examples."""
    size = len(source)
    images, labels = tf.constant(source.images), tf.constant(source.labels)
    indices = tf.data.Dataset.range(size).shuffle(min(buffer, size), seed=seed, reshuffle_each_iteration=True)
    positions = indices.repeat().enumerate().skip(start)
    return positions.map(lambda position, index: (position, (tf.gather(images, index), tf.gather(labels, index))),
                         num_parallel_calls=tf.data.AUTOTUNE)


def _shuffled_stream(source: Streamed, stream_seed, start: int, window: int) -> tf.data.Dataset:
    """(position, (image, label)) from `start` on; data epoch k is `source` with every window of
    `window` consecutive examples permuted by a seed drawn from (seed, k, window index)."""
    size = len(source)
    first_epoch, offset = divmod(start, size)

    def epoch(k):
        epoch_seed = tf.random.experimental.stateless_fold_in(stream_seed, k)

        def permute(index, examples):
            images, labels = examples
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(labels)[0]), tf.random.experimental.stateless_fold_in(epoch_seed, index))
            return tf.data.Dataset.from_tensor_slices((tf.gather(images, order), tf.gather(labels, order)))

        return source.dataset.batch(min(window, size)).enumerate().flat_map(permute)

    examples = tf.data.Dataset.range(first_epoch, _ENDLESS).flat_map(epoch).skip(offset)
    return tf.data.Dataset.zip(tf.data.Dataset.range(start, _ENDLESS), examples)


def _per_pipeline_batch_size(global_batch_size, input_context) -> int:
    if (
        isinstance(global_batch_size, bool)
        or not isinstance(global_batch_size, (int, np.integer))
        or global_batch_size < 1
    ):
        raise ValueError(
            f"global_batch_size must be a positive integer, got {global_batch_size!r}")
    if input_context is None:
        return int(global_batch_size)
    replicas = int(input_context.num_replicas_in_sync)
    if global_batch_size % replicas:
        raise ValueError(
            f"global_batch_size={global_batch_size} does not split evenly over the "
            f"{replicas} replicas in sync; use a multiple of {replicas}.")
    return int(input_context.get_per_replica_batch_size(global_batch_size))


def _pipeline_position(input_context) -> tuple[int, int]:
    """(number of input pipelines, this pipeline's id)."""
    if input_context is None:
        return 1, 0
    return int(input_context.num_input_pipelines), int(input_context.input_pipeline_id)


def _share_range(
    total: int, num_pipelines: int, pipeline_id: int, equal_shares: bool
) -> tuple[int, int]:
    """[start, end) of the examples pipeline ``pipeline_id`` of ``num_pipelines`` reads.

    Contiguous ranges covering ``[0, total)``; sizes differ by at most one, the
    first ``total % num_pipelines`` ranges getting the extra example (as
    ``tfds.even_splits``). With ``equal_shares`` every range has
    ``total // num_pipelines`` examples and the last few examples are dropped.
    """
    base_size, remainder = divmod(total, num_pipelines)
    if equal_shares:
        remainder = 0
    start = pipeline_id * base_size + min(pipeline_id, remainder)
    end = start + base_size + (1 if pipeline_id < remainder else 0)
    if end <= start:
        raise ValueError(
            f"{total} examples cannot give each of {num_pipelines} input pipelines "
            f"{'an equal non-empty share' if equal_shares else 'an example'}; "
            "use more examples (max_examples) or fewer pipelines.")
    return start, end


# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------


def _read_prepared_tfds(
    info, split, data_dir, max_examples, num_pipelines, pipeline_id, equal_shares, training, seed
) -> InMemory | Streamed:
    """This pipeline's share from tfds: in memory, or streamed for ImageNet.

    Images are uint8 arrays, or JPEG bytes for ImageNet. Raises
    DatasetNotPreparedError if tfds has no data to serve.
    """
    with fashion_mnist.asking_tfds_quietly():
        builder = tfds.builder(info.name, data_dir=data_dir)
        split_size = _prepared_split_size(builder, split) or info.num_examples[split]
    total = split_size if max_examples is None else min(split_size, max_examples)
    start, end = _share_range(total, num_pipelines, pipeline_id, equal_shares)
    split_slice = split if (start, end) == (0, split_size) else f"{split}[{start}:{end}]"

    streamed = info.name == "imagenet2012"
    decoders = None
    if streamed:
        # Keep the JPEG bytes: decode_and_crop_jpeg decodes only the crop.
        decoders = {"image": tfds.decode.SkipDecoding()}
    read_config = tfds.ReadConfig(
        # One seeded file order for every epoch: the order of epoch k must not
        # depend on how many epochs this process read before (resuming).
        shuffle_seed=seed if training and streamed else None,
        shuffle_reshuffle_each_iteration=False,
        # We hold small datasets in memory and stream ImageNet ourselves.
        try_autocache=False,
    )
    try:
        with fashion_mnist.asking_tfds_quietly():
            examples = builder.as_dataset(
                split=split_slice, shuffle_files=training and streamed, decoders=decoders,
                read_config=read_config)
    except AssertionError as error:  # tfds's way of saying "no data here".
        raise DatasetNotPreparedError(_not_prepared_message(info.name, data_dir)) from error
    examples = examples.map(
        lambda example: (example["image"], example["label"]),
        num_parallel_calls=tf.data.AUTOTUNE)
    # A no-op on real data (the slice has exactly this many examples); it keeps
    # max_examples exact under tfds.testing.mock_data, which ignores slices.
    examples = examples.take(end - start)
    if streamed:
        return Streamed(examples, end - start)
    # uint8 images of at most 150 MB: read the files once, then index them.
    images, labels = [], []
    for image, label in examples.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    return InMemory(np.stack(images), np.asarray(labels))


def _not_prepared_message(name: str, data_dir: str | None) -> str:
    location = data_dir if data_dir is not None else (
        "tfds's default data_dir ($TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    build_dir = data_dir if data_dir is not None else "~/tensorflow_datasets"
    message = f"The tfds dataset {name!r} is not prepared in {location}. "
    if name == "imagenet2012":
        return message + (
            "tfds cannot download ImageNet: download ILSVRC2012_img_train.tar and "
            "ILSVRC2012_img_val.tar from https://image-net.org/ (needs an account), "
            f"put them in {build_dir}/downloads/manual/, then run "
            f"`tfds build imagenet2012 --data_dir={build_dir}` (see {_IMAGENET_DOCS}). "
            "Copy the prepared directory to gs:// for TPUs and pass data_dir=.")
    return message + (
        f"Prepare it once on a machine with internet: `tfds build {name} "
        f"--data_dir={build_dir}` (copy the result to gs:// for TPUs), then pass "
        "that directory as data_dir.")


def _read_fashion_mnist(
    split, data_dir, max_examples, num_pipelines, pipeline_id, equal_shares, training, seed
) -> InMemory:
    """Like _read_prepared_tfds, falling back to figs_tf.train.fashion_mnist's arrays."""
    info = dataset_info("fashion_mnist")
    try:
        return _read_prepared_tfds(
            info, split, data_dir, max_examples, num_pipelines, pipeline_id, equal_shares,
            training, seed)
    except DatasetNotPreparedError:
        pass  # Offline: the IDX files (then a tfds download) below.
    images, labels = fashion_mnist.load_fashion_mnist(split, data_dir=data_dir)
    total = len(labels) if max_examples is None else min(len(labels), max_examples)
    start, end = _share_range(total, num_pipelines, pipeline_id, equal_shares)
    return InMemory(images[start:end], labels[start:end])


# ---------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------


def normalize_images(name: str, images: tf.Tensor) -> tf.Tensor:
    """Normalises float images per channel with ``name``'s mean and std.

    ``images`` hold 0..255 pixel values (any leading shape, channels last);
    Fashion-MNIST and CIFAR-10 are scaled to [0, 1] first, since their
    constants are on that scale; ImageNet's constants are on 0..255.

    Example::

        normalize_images("cifar10", tf.fill([32, 32, 3], 125.3))  # ~0 everywhere
    """
    mean, std, scale = _NORMALIZATION[dataset_info(name).name]
    images = tf.cast(images, tf.float32) / scale
    return (images - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def _make_preprocess_fn(info: DatasetInfo, output_size: int, augment: bool):
    """Returns preprocess(image, label, seed or None) -> (float32 image, int32 label)."""

    def preprocess_small_image(image, label, seed):
        image = tf.cast(image, tf.float32)
        if augment:
            image = _pad_crop_flip(image, _RANDOM_CROP_PADDING[info.name], seed)
        if output_size != info.image_size:
            image = tf.image.resize(image, [output_size, output_size], method="bilinear")
        return normalize_images(info.name, image), tf.cast(label, tf.int32)

    def preprocess_imagenet(encoded_jpeg, label, seed):
        if augment:
            image = preprocess_imagenet_train_image(encoded_jpeg, output_size, seed)
        else:
            image = preprocess_imagenet_eval_image(encoded_jpeg, output_size)
        return normalize_images(info.name, image), tf.cast(label, tf.int32)

    return preprocess_imagenet if info.name == "imagenet2012" else preprocess_small_image


def _pad_crop_flip(image: tf.Tensor, padding: int, seed: tf.Tensor) -> tf.Tensor:
    """Zero-pads by ``padding``, crops back to the original size at random, flips."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def _decode_centre_crop(encoded_jpeg: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes the centred square of image_size/(image_size+32) of the shorter side."""
    shape = tf.image.extract_jpeg_shape(encoded_jpeg)
    height, width = shape[0], shape[1]
    crop_size = tf.cast(
        (image_size / (image_size + IMAGENET_CROP_PADDING))
        * tf.cast(tf.minimum(height, width), tf.float32),
        tf.int32)
    offset_height = (height - crop_size + 1) // 2
    offset_width = (width - crop_size + 1) // 2
    crop_window = tf.stack([offset_height, offset_width, crop_size, crop_size])
    return tf.image.decode_and_crop_jpeg(encoded_jpeg, crop_window, channels=3)


def preprocess_imagenet_eval_image(encoded_jpeg: tf.Tensor, image_size: int = 224) -> tf.Tensor:
    """Centre-crops a JPEG and resizes it: the ImageNet evaluation image.

    The crop is the centred square of ``image_size / (image_size + 32)`` of the
    shorter side (224/256 at 224), decoded from the JPEG bytes directly; it is
    resized (bilinear) to ``image_size``.

    Returns:
      float32 ``(image_size, image_size, 3)`` with 0..255 values, not yet
      normalised (see :func:`normalize_images`).

    Example::

        image = preprocess_imagenet_eval_image(tf.io.read_file("cat.jpg"))
    """
    image = _decode_centre_crop(encoded_jpeg, image_size)
    return tf.image.resize(image, [image_size, image_size], method="bilinear")


def preprocess_imagenet_train_image(
    encoded_jpeg: tf.Tensor, image_size: int, seed: tf.Tensor
) -> tf.Tensor:
    """Random-area crop, resize, flip and colour jitter: an ImageNet training image.

    The crop is Inception/ResNet's: a box of 8%..100% of the image area and
    aspect ratio 3/4..4/3 from ``tf.image.stateless_sample_distorted_bounding_box``,
    decoded from the JPEG bytes directly. When no box fits in 10 attempts the
    sampler returns the whole image, and we use the evaluation centre crop
    instead, as the reference pipeline does. Then: bilinear resize to
    ``image_size``, random horizontal flip, random brightness (+-32/255),
    saturation and contrast (x0.5..1.5).

    Args:
      encoded_jpeg: Scalar string tensor, a JPEG file's bytes.
      image_size: Output height and width.
      seed: Shape ``[2]`` integer seed of the stateless random ops; the same
        seed gives the same image.

    Returns:
      float32 ``(image_size, image_size, 3)`` with 0..255 values, not yet
      normalised.
    """
    crop_seed, flip_seed, brightness_seed, saturation_seed, contrast_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 5))
    shape = tf.image.extract_jpeg_shape(encoded_jpeg)
    whole_image_box = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4])
    box_begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=whole_image_box,
        seed=crop_seed,
        min_object_covered=0.1,
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    offset_height, offset_width, _ = tf.unstack(box_begin)
    crop_height, crop_width, _ = tf.unstack(box_size)
    sampler_gave_up = tf.reduce_all(tf.equal(box_size[:2], shape[:2]))
    crop_window = tf.stack([offset_height, offset_width, crop_height, crop_width])
    image = tf.cond(
        sampler_gave_up,
        lambda: _decode_centre_crop(encoded_jpeg, image_size),
        lambda: tf.image.decode_and_crop_jpeg(encoded_jpeg, crop_window, channels=3))
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)

    # Colour ops expect [0, 1] floats (saturation goes through HSV).
    image = image / 255.0
    image = tf.image.stateless_random_brightness(
        image, _BRIGHTNESS_MAX_DELTA, seed=brightness_seed)
    image = tf.image.stateless_random_saturation(
        image, *_SATURATION_RANGE, seed=saturation_seed)
    image = tf.image.stateless_random_contrast(image, *_CONTRAST_RANGE, seed=contrast_seed)
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0
