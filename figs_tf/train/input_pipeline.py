"""One tf.data input pipeline: a dataset is a tfds name plus the preprocessing of its row in `DATASETS`.

Every pipeline yields ``(images, labels)`` batches: float32 NHWC images,
normalised per channel with the dataset's mean and standard deviation, and
int32 labels. Training pipelines shuffle (seeded), augment, and repeat
forever; evaluation pipelines read the split once, in order. The pipeline
knows no dataset by name: what differs (sizes, splits, constants, the image
functions, streamed or in memory, where else the data may come from, how to
prepare it) is the dataset's `DatasetInfo`.

Example::

    import tensorflow as tf
    from figs_tf.train import input_pipeline

    strategy = tf.distribute.MirroredStrategy()
    train_data = strategy.distribute_datasets_from_function(
        lambda context: input_pipeline.make_dataset(
            "cifar10", "train", global_batch_size=256, training=True,
            input_context=context, data_dir="gs://my-bucket/tensorflow_datasets"))
    info = input_pipeline.dataset_info("cifar10")
    steps_per_epoch = input_pipeline.num_examples("cifar10", info.train_split) // 256
    model = build_model(input_pipeline.input_shape("cifar10"), info.num_classes)
    model.fit(train_data, steps_per_epoch=steps_per_epoch, epochs=10)

Where the data comes from: the dataset prepared by tfds in ``data_dir``
(tfds's default directory if None; ``gs://`` works). If tfds has none, a
dataset's `offline` reader (Fashion-MNIST: the Debian files,
`figs_tf.train.fashion_mnist`), then a tfds download where the dataset allows
it (Fashion-MNIST); else :class:`DatasetNotPreparedError` says how to prepare
it (ImageNet: the tars in ``<data_dir>/downloads/manual/``, then ``tfds build``).

Sharding: with an ``input_context`` of N pipelines, pipeline ``i`` reads the
``i``-th of ``tfds.even_splits`` of the first ``max_examples`` examples:
contiguous, disjoint, covering everything, sizes differing by at most one
(the first get the extra). A tfds dataset reads that slice of its split
(``"train[12500:25000]"``), however few files the split has; the offline
arrays are sliced alike. Evaluation with ``drop_remainder=True`` makes every
share the same size (``drop_remainder`` of ``even_splits``), so every host
runs the same number of evaluation steps.

Randomness and resuming: the training stream of a pipeline is a function of
``seed`` and the position in it, so a run resumed at step ``s``
(``start_batch``) reads what the uninterrupted run read from step ``s`` on;
nothing about the stream is checkpointed. A share held in memory (all but
ImageNet: at most 150 MB) is shuffled by ``Dataset.shuffle(seed=seed,
reshuffle_each_iteration=True)`` on the indices of the share: resuming replays
indices (about a microsecond each), not examples. A streamed share (ImageNet)
is read in one seeded file order, and in data epoch ``k`` every window of
``shuffle_buffer`` consecutive examples is permuted with a seed drawn from
``(seed, pipeline id, k, window)``; resuming reads (without decoding) the
records before the position in its data epoch. Augmentation uses stateless
random ops seeded from ``(seed, pipeline id, position)``: the same seed gives
the same batches, and hosts augment differently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from figs_tf.train import errors
from figs_tf.train import fashion_mnist

__all__ = ["DATASETS", "DatasetInfo", "DatasetNotPreparedError", "IMAGENET_CROP_PADDING", "KNOWN_DATASETS",
           "dataset_info", "input_shape", "make_dataset", "normalize_images", "num_examples",
           "preprocess_imagenet_eval_image", "preprocess_imagenet_train_image"]

#: The ImageNet eval crop keeps image_size / (image_size + 32) of the shorter side (224 / 256 at 224).
IMAGENET_CROP_PADDING = 32
# Inception-style `distort_color` strengths: moderate, so that small networks still learn colour.
_BRIGHTNESS_MAX_DELTA = 32.0 / 255.0
_SATURATION_RANGE = (0.5, 1.5)
_CONTRAST_RANGE = (0.5, 1.5)
_ENDLESS = np.iinfo(np.int64).max  # the end of an endless stream of positions
_TFDS_BUILD = ("Prepare it once on a machine with internet: `tfds build {name} --data_dir={build_dir}` (copy the "
               "result to gs:// for TPUs), then pass that directory as data_dir.")


class DatasetNotPreparedError(errors.UserError, RuntimeError):
    """A tfds dataset is not prepared in ``data_dir``; the message says how to fix it (the binaries:
    a user error, exit status 2)."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A dataset: its tfds name and what the model, the loop and the pipeline need to know.

    Attributes:
      name: The tfds name, e.g. ``"cifar10"``.
      num_classes, image_size, channels: Labels, and the images the model sees by default.
      train_split, eval_split: The splits to train and evaluate on.
      num_examples: ``{split: published size}``: the table of splits.
      mean, std, scale: Per-channel normalisation constants of pixels divided by ``scale``.
      train_image: ``(image, size, seed) -> image``: the augmented training image, float32 0..255.
      eval_image: ``(image, size) -> image``: the evaluation image, float32 0..255.
      streamed: tfds keeps the images encoded and the share is streamed (else read into memory).
      offline: ``split -> (uint8 images, labels)`` or None, read when tfds has no prepared copy.
      download: tfds may download it when there is neither.
      how_to_prepare: The fix when it is not prepared (``{name}``, ``{build_dir}`` filled in).
    """

    name: str
    num_classes: int
    image_size: int
    channels: int
    train_split: str
    eval_split: str
    num_examples: dict
    mean: tuple
    std: tuple
    scale: float
    train_image: Callable
    eval_image: Callable
    streamed: bool = False
    offline: Callable | None = None
    download: bool = False
    how_to_prepare: str = _TFDS_BUILD


def _resized(image, size):
    """float32 `image` at `size` x `size` (bilinear; as it is if it has that size)."""
    image = tf.cast(image, tf.float32)
    if tuple(image.shape[:2]) == (size, size):
        return image
    return tf.image.resize(image, [size, size], method="bilinear")


def _pad_crop_flip(image, size, seed, *, padding):
    """Zero-pads by ``padding``, crops back to the original size at random, flips, resizes."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.cast(image, tf.float32)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_seed)
    return _resized(tf.image.stateless_random_flip_left_right(image, seed=flip_seed), size)


def _decode_centre_crop(encoded_jpeg, image_size):
    """Decodes the centred square of image_size/(image_size+32) of the shorter side."""
    shape = tf.image.extract_jpeg_shape(encoded_jpeg)
    height, width = shape[0], shape[1]
    crop_size = tf.cast((image_size / (image_size + IMAGENET_CROP_PADDING))
                        * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    crop_window = tf.stack([(height - crop_size + 1) // 2, (width - crop_size + 1) // 2, crop_size, crop_size])
    return tf.image.decode_and_crop_jpeg(encoded_jpeg, crop_window, channels=3)


def preprocess_imagenet_eval_image(encoded_jpeg, image_size=224):
    """Centre-crops a JPEG and resizes it: the ImageNet evaluation image.

    The crop is the centred square of ``image_size / (image_size + 32)`` of the
    shorter side (224/256 at 224), decoded from the JPEG bytes directly, then
    resized (bilinear). Returns float32 ``(image_size, image_size, 3)`` of
    0..255 values, not yet normalised (:func:`normalize_images`).

    Example::

        image = preprocess_imagenet_eval_image(tf.io.read_file("cat.jpg"))
    """
    return tf.image.resize(_decode_centre_crop(encoded_jpeg, image_size), [image_size, image_size])


def preprocess_imagenet_train_image(encoded_jpeg, image_size, seed):
    """Random-area crop, resize, flip and colour jitter: an ImageNet training image.

    The crop is Inception/ResNet's: 8%..100% of the area, aspect ratio
    3/4..4/3, from ``tf.image.stateless_sample_distorted_bounding_box`` and
    decoded from the JPEG bytes directly; when no box fits in 10 attempts, the
    evaluation centre crop (as the reference pipeline). Then a bilinear resize
    to ``image_size``, a random flip, brightness (±32/255), saturation and
    contrast (×0.5..1.5). ``seed``: a shape-[2] integer seed; the same seed
    gives the same image. Returns float32 0..255, not yet normalised.
    """
    crop_seed, flip_seed, brightness_seed, saturation_seed, contrast_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 5))
    shape = tf.image.extract_jpeg_shape(encoded_jpeg)
    box_begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4]), seed=crop_seed,
        min_object_covered=0.1, aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    crop_window = tf.stack([box_begin[0], box_begin[1], box_size[0], box_size[1]])
    image = tf.cond(tf.reduce_all(tf.equal(box_size[:2], shape[:2])),  # the sampler gave up
                    lambda: _decode_centre_crop(encoded_jpeg, image_size),
                    lambda: tf.image.decode_and_crop_jpeg(encoded_jpeg, crop_window, channels=3))
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed) / 255.0  # colour ops want [0, 1]
    image = tf.image.stateless_random_brightness(image, _BRIGHTNESS_MAX_DELTA, seed=brightness_seed)
    image = tf.image.stateless_random_saturation(image, *_SATURATION_RANGE, seed=saturation_seed)
    image = tf.image.stateless_random_contrast(image, *_CONTRAST_RANGE, seed=contrast_seed)
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


#: The table of datasets (and of their splits). Normalisation constants are over every pixel of the
#: training split: Fashion-MNIST computed here from its 60000 training images; CIFAR-10 the widely
#: published values (not the often-copied 0.2023/0.1994/0.2010, a mean of per-image stds); ImageNet
#: the standard RGB mean/std on 0..255 pixels of the ResNet reference pipelines.
DATASETS = {info.name: info for info in (
    DatasetInfo("fashion_mnist", 10, 28, 1, "train", "test", {"train": 60000, "test": 10000},
                mean=(0.28604060,), std=(0.35302424,), scale=255.0,
                train_image=functools.partial(_pad_crop_flip, padding=2), eval_image=_resized,
                offline=functools.partial(fashion_mnist.load_fashion_mnist, missing_ok=True), download=True,
                how_to_prepare=f"Offline: {fashion_mnist.HOW_TO_GET_THEM}. Online: {_TFDS_BUILD}"),
    DatasetInfo("cifar10", 10, 32, 3, "train", "test", {"train": 50000, "test": 10000},
                mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), scale=255.0,
                train_image=functools.partial(_pad_crop_flip, padding=4), eval_image=_resized),
    DatasetInfo("imagenet2012", 1000, 224, 3, "train", "validation", {"train": 1281167, "validation": 50000},
                mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), scale=1.0,
                train_image=preprocess_imagenet_train_image, eval_image=preprocess_imagenet_eval_image,
                streamed=True, how_to_prepare=(
                    "tfds cannot download ImageNet: download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar "
                    "from https://image-net.org/ (needs an account), put them in {build_dir}/downloads/manual/, "
                    "then run `tfds build {name} --data_dir={build_dir}` (see "
                    "https://www.tensorflow.org/datasets/catalog/imagenet2012). Copy the prepared directory to "
                    "gs:// for TPUs and pass data_dir=.")),
)}

#: Names accepted by every function of this module.
KNOWN_DATASETS = tuple(DATASETS)


def dataset_info(name):
    """Returns the :class:`DatasetInfo` of ``name``, e.g. ``dataset_info("cifar10").num_classes == 10``.

    Raises:
      ValueError: ``name`` is not one of :data:`KNOWN_DATASETS`.
    """
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown dataset {name!r}; known datasets: {', '.join(map(repr, KNOWN_DATASETS))}") from None


def input_shape(name, image_size=None):
    """``(height, width, channels)`` of the images the model sees; ``image_size`` None: the dataset's.

    Example::

        input_shape("imagenet2012", image_size=128)  # (128, 128, 3)
    """
    info = dataset_info(name)
    size = _resolve_image_size(info, image_size)
    return (size, size, info.channels)


def num_examples(name, split, data_dir=None, max_examples=None):
    """The number of examples in ``split`` (all pipelines together), at most ``max_examples``.

    The prepared tfds dataset's count when ``data_dir`` has one, else the
    published size (also what the offline files hold, and what
    ``tfds.testing.mock_data``, which has no split sizes, leaves to us).

    Example::

        num_examples("cifar10", "train", max_examples=512)  # 512
    """
    info = dataset_info(name)
    _check_split(info, split)
    _check_optional_positive_int("max_examples", max_examples)
    count = None
    try:
        with _asking_tfds_quietly():
            builder = tfds.builder(name, data_dir=data_dir)
            if builder.is_prepared():
                count = int(builder.info.splits[split].num_examples) or None
    except Exception:  # An unreadable data_dir, no split metadata: the table's count.
        count = None
    count = count or info.num_examples[split]
    return count if max_examples is None else min(count, max_examples)


def normalize_images(name, images):
    """Normalises 0..255 images (any leading shape, channels last) with ``name``'s mean and std.

    Example::

        normalize_images("cifar10", tf.fill([32, 32, 3], 125.3))  # ~0 everywhere
    """
    info = dataset_info(name)
    images = tf.cast(images, tf.float32) / info.scale
    return (images - tf.constant(info.mean, tf.float32)) / tf.constant(info.std, tf.float32)


def make_dataset(name, split, *, global_batch_size, training, input_context=None, data_dir=None, image_size=None,
                 augment=True, drop_remainder=False, seed=0, max_examples=None, shuffle_buffer=None, start_batch=0):
    """Builds the batched ``tf.data.Dataset`` of one input pipeline.

    Args:
      name: A name of :data:`KNOWN_DATASETS`.
      split: A split of the dataset, e.g. ``dataset_info(name).train_split``.
      global_batch_size: Examples per step over all replicas; each pipeline batches
        ``input_context.get_per_replica_batch_size(global_batch_size)`` of them.
      training: True: shuffle, augment (if ``augment``) and repeat forever.
        False: one pass over the data in order, no augmentation.
      input_context: From ``strategy.distribute_datasets_from_function``; the
        pipeline then reads only its own disjoint share.
      data_dir: tfds data directory (local or ``gs://``); None: tfds's default.
      image_size: Output height and width; None: the dataset's.
      augment: Augment training data with the dataset's ``train_image``
        (Fashion-MNIST: pad-2 random crop and flip; CIFAR-10: pad-4; ImageNet:
        random-area crop, flip, colour jitter).
      drop_remainder: Drop the last, smaller batch (TPUs need full batches);
        for evaluation it also makes all pipelines' shares equal.
      seed: Seed of the shuffle order and the augmentation.
      max_examples: Use only the first ``max_examples`` examples of the split; None: all.
      shuffle_buffer: In memory: the shuffle buffer (None: the whole share);
        streamed: the examples per shuffled window (None: 10000, ~1 GB of JPEG).
      start_batch: Training only: start after this many of the pipeline's
        batches, with the batches the stream from 0 gives from there on.

    Returns:
      ``(images, labels)`` batches: float32 ``(batch, size, size, channels)`` and int32 ``(batch,)``.

    Raises:
      ValueError: an unknown dataset or split, a global batch that does not split
        over the replicas in sync, too few examples for the pipelines.
      DatasetNotPreparedError: the dataset is not prepared in ``data_dir``.

    Example::

        eval_data = make_dataset("fashion_mnist", "test", global_batch_size=100, training=False,
                                 max_examples=1000)
    """
    info = dataset_info(name)
    _check_split(info, split)
    _check_optional_positive_int("shuffle_buffer", shuffle_buffer)
    if isinstance(start_batch, bool) or not isinstance(start_batch, (int, np.integer)) or start_batch < 0:
        raise ValueError(f"start_batch must be a non-negative integer, got {start_batch!r}")
    if start_batch and not training:
        raise ValueError("start_batch is for training streams; evaluation reads its split once from the start")
    size = _resolve_image_size(info, image_size)
    batch_size = _per_pipeline_batch_size(global_batch_size, input_context)
    num_pipelines, pipeline_id = (1, 0) if input_context is None else (
        int(input_context.num_input_pipelines), int(input_context.input_pipeline_id))
    total = num_examples(name, split, data_dir, max_examples)
    # Equal shares for evaluation with full batches only: then every host runs the same number
    # of steps. Training repeats, so unequal shares are harmless.
    start, end = _share(split, total, num_pipelines, pipeline_id, equal=drop_remainder and not training)
    share = _read_share(info, split, data_dir, start, end, file_seed=seed if training else None)

    def prepare(image, label, example_seed=None):
        image = (info.train_image(image, size, example_seed) if example_seed is not None
                 else info.eval_image(image, size))
        return normalize_images(name, image), tf.cast(label, tf.int32)

    if training:
        stream_seed = tf.constant([seed, pipeline_id], dtype=tf.int64)
        position = int(start_batch) * batch_size
        examples = (_in_memory_stream(*share, seed, position, shuffle_buffer or end - start)
                    if isinstance(share, tuple)
                    else _windowed_stream(share, end - start, stream_seed, position, shuffle_buffer or 10_000))
        # The position in the stream seeds each example's augmentation: deterministic, new every epoch.
        examples = examples.map(lambda position, example: prepare(
            *example, tf.random.experimental.stateless_fold_in(stream_seed, position) if augment else None),
            num_parallel_calls=tf.data.AUTOTUNE)
    else:
        examples = tf.data.Dataset.from_tensor_slices(share) if isinstance(share, tuple) else share
        examples = examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return examples.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def _share(split, total, num_pipelines, pipeline_id, equal):
    """[start, end) of this pipeline's share of the first `total` examples: `tfds.even_splits`'s."""
    piece = tfds.even_splits(f"{split}[:{total}]", num_pipelines, drop_remainder=equal)[pipeline_id]
    with _asking_tfds_quietly():
        (absolute,) = piece.to_absolute({split: tfds.core.SplitInfo(name=split, shard_lengths=[total], num_bytes=0)})
    start, end = absolute.from_ or 0, total if absolute.to is None else absolute.to
    if end <= start:
        raise ValueError(f"{total} examples cannot give each of {num_pipelines} input pipelines "
                         f"{'an equal non-empty share' if equal else 'an example'}; use more examples "
                         "(max_examples) or fewer pipelines.")
    return start, end


def _read_share(info, split, data_dir, start, end, file_seed):
    """Examples [start, end) of `split`: (uint8 images, labels) arrays, or for a streamed dataset
    a dataset of (JPEG bytes, label) in one order (`file_seed`'s file order, or the files' own)."""
    builder = tfds.builder(info.name, data_dir=data_dir)
    read = functools.partial(
        builder.as_dataset, split=f"{split}[{start}:{end}]", as_supervised=True,
        shuffle_files=info.streamed and file_seed is not None,
        # Keep the JPEG bytes of a streamed dataset: decode_and_crop_jpeg decodes only the crop.
        decoders={"image": tfds.decode.SkipDecoding()} if info.streamed else None,
        # One seeded file order for every epoch: epoch k's order must not depend on how many epochs this
        # process read before (resuming). We hold small datasets in memory and stream the others ourselves.
        read_config=tfds.ReadConfig(shuffle_seed=file_seed if info.streamed else None,
                                    shuffle_reshuffle_each_iteration=False, try_autocache=False))
    try:
        with _asking_tfds_quietly():
            examples = read()
    except AssertionError as error:  # tfds's way of saying "not prepared"
        arrays = info.offline(split) if info.offline else None
        if arrays is not None:
            return arrays[0][start:end], arrays[1][start:end]
        examples = _download(info, builder, data_dir, read, error)
    # A no-op on real data; keeps max_examples exact under tfds.testing.mock_data, which ignores slices.
    examples = examples.take(end - start)
    if info.streamed:
        return examples
    images, labels = next(iter(tfds.as_numpy(examples.batch(end - start))))  # at most 150 MB of uint8
    return images, labels


def _download(info, builder, data_dir, read, not_prepared):
    """`read()` after tfds downloaded and prepared the dataset where it may; else the error saying how."""
    problem = not_prepared
    if info.download:
        try:
            builder.download_and_prepare()
            return read()
        except Exception as error:  # the network, a checksum, a missing dependency
            problem = error
    build_dir = data_dir or "~/tensorflow_datasets"
    where = data_dir or "tfds's default data_dir ($TFDS_DATA_DIR, else ~/tensorflow_datasets)"
    tried = f" (the download failed: {type(problem).__name__}: {problem})" if problem is not not_prepared else ""
    raise DatasetNotPreparedError(f"The tfds dataset {info.name!r} is not prepared in {where}{tried}. "
                                  + info.how_to_prepare.format(name=info.name, build_dir=build_dir)) from problem


def _in_memory_stream(images, labels, seed, start, buffer):
    """(position, (image, label)) from `start` on: tf.data's seeded shuffle, reshuffled every epoch,
    run on the indices of the share, so that skipping to `start` replays indices, not examples."""
    size = len(labels)
    images, labels = tf.constant(images), tf.constant(labels)
    indices = tf.data.Dataset.range(size).shuffle(min(buffer, size), seed=seed, reshuffle_each_iteration=True)
    positions = indices.repeat().enumerate().skip(start)
    return positions.map(lambda position, index: (position, (tf.gather(images, index), tf.gather(labels, index))),
                         num_parallel_calls=tf.data.AUTOTUNE)


def _windowed_stream(examples, size, stream_seed, start, window):
    """(position, (image, label)) from `start` on; data epoch k is `examples` with every window of
    `window` consecutive examples permuted by a seed drawn from (seed, k, window index)."""
    first_epoch, offset = divmod(start, size)

    def epoch(k):
        epoch_seed = tf.random.experimental.stateless_fold_in(stream_seed, k)

        def permute(index, batch):
            images, labels = batch
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(labels)[0]), tf.random.experimental.stateless_fold_in(epoch_seed, index))
            return tf.data.Dataset.from_tensor_slices((tf.gather(images, order), tf.gather(labels, order)))

        return examples.batch(min(window, size)).enumerate().flat_map(permute)

    stream = tf.data.Dataset.range(first_epoch, _ENDLESS).flat_map(epoch).skip(offset)
    return tf.data.Dataset.zip(tf.data.Dataset.range(start, _ENDLESS), stream)


def _per_pipeline_batch_size(global_batch_size, input_context):
    if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, (int, np.integer)) \
            or global_batch_size < 1:
        raise ValueError(f"global_batch_size must be a positive integer, got {global_batch_size!r}")
    if input_context is None:
        return int(global_batch_size)
    replicas = int(input_context.num_replicas_in_sync)
    if global_batch_size % replicas:
        raise ValueError(f"global_batch_size={global_batch_size} does not split evenly over the {replicas} "
                         f"replicas in sync; use a multiple of {replicas}.")
    return int(input_context.get_per_replica_batch_size(global_batch_size))


def _check_split(info, split):
    if split not in info.num_examples:
        raise ValueError(f"Unknown split {split!r} of {info.name!r}; known splits: "
                         f"{', '.join(map(repr, info.num_examples))}")


def _check_optional_positive_int(argument_name, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"{argument_name} must be None or a positive integer, got {value!r}")


def _resolve_image_size(info, image_size):
    _check_optional_positive_int("image_size", image_size)
    return int(image_size) if image_size is not None else info.image_size


class _NotPreparedWarnings(logging.Filter):
    """Drops tfds's "Variant folder <dir> has no dataset_info.json" (one per look at an unprepared
    directory: how this module finds out, not a fault) and even_splits's note on dropped examples."""

    def filter(self, record):
        return not str(record.msg).startswith(("Variant folder ", "Dropping "))


@contextlib.contextmanager
def _asking_tfds_quietly():
    quiet = _NotPreparedWarnings()
    logger = logging.getLogger("absl")  # tfds logs through absl.logging
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)
