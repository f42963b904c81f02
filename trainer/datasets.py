"""TFRecord shards to batches: the trainer's tf.data input pipeline.

One `make_dataset(...)` builds training and evaluation input in the canonical
order: files -> shard per input pipeline -> shuffle files -> interleave ->
parse -> shuffle -> repeat -> check -> decode and crop -> batch -> flips,
colour noise and mean (vectorised over the batch) -> prefetch. The shards are
read and checked by `trainer.shard_reader`; what the data set holds comes
from `trainer.data_info`.

With `finish_on_device=True` a training pipeline stops at the uint8 crops,
with each batch's random draws (which images to mirror, each image's RGB
offset) beside them; the trainer applies `finish_crops` (mirror, scale,
offset in one fused pass) at the start of its step, on the accelerator. The
host then does only the work that must be done there (reading, decoding,
cropping, a few random numbers per batch) and sends a quarter of the bytes
float32 would take; the batches are the same as when the pipeline finishes
them itself. Evaluation can stop there too (no flips, the mean as each
view's offset): 10-view batches are then a quarter of their float32 size, and
trainer.evaluate finishes one view at a time.
"""
import functools
import random
import time

import tensorflow as tf

from trainer import augment
from trainer import data_info as data_info_lib
from trainer import geometry
from trainer import shard_reader
from trainer.data_info import require_positive_int

AUTOTUNE = tf.data.AUTOTUNE
# Shards read at once: more files in flight overlap their reads and mix the
# examples more. (The Beam job already spreads every class over all shards by
# a hash of split, class and file name, and orders each shard by that hash.)
_MAX_CYCLE_LENGTH = 16
DEFAULT_SHUFFLE_BUFFER = 10_000  # about 0.5 GB of 256x256 JPEGs; enough to mix 16 interleaved shards

_plain = shard_reader.no_autograph


def crop_geometry(stored_size, image_size):
    """(reference, plain): the side of the square the crops come from, and whether the
    stored images are squares of that side, so that a crop is a plain window of the
    stored JPEG (no resampling); otherwise each view is sampled in the paper's geometry
    (trainer/geometry.py) from images of any size."""
    reference = geometry.reference_size(image_size, stored=stored_size)
    return reference, bool(stored_size) and stored_size == reference


def decode_centre(encoded, image_size, reference, plain):
    """The centre view of one JPEG (uint8 (S, S, 3))."""
    if plain:
        return augment.decode_center_crop(encoded, image_size, upscale=False)
    offset = geometry.centre_offset(reference, image_size)
    return geometry.decode_views(encoded, image_size, reference, [offset])[0]


def _decode_train(index, element, image_size, random_crop, seed, reference, plain):
    encoded, label = element[0], element[1]
    if not random_crop:
        return decode_centre(encoded, image_size, reference, plain), label
    seed = tf.random.experimental.stateless_fold_in(seed, index)
    if plain:
        return augment.decode_random_crop(encoded, image_size, seed, upscale=False), label
    offset = geometry.random_offset(reference, image_size, seed)
    return geometry.decode_views(encoded, image_size, reference, [offset])[0], label


def _decode_eval(encoded, label, filename, path, index, image_size, ten_crop, reference, plain):
    if not ten_crop:
        return decode_centre(encoded, image_size, reference, plain), label
    if plain:
        return augment.ten_crop_views(tf.io.decode_jpeg(encoded, channels=3), image_size), label
    offsets = geometry.corner_offsets(reference, image_size)
    return geometry.ten_views(geometry.decode_views(encoded, image_size, reference, offsets)), label


def _draws(info, flip, pca_noise, pca_stddev, mean_subtract):
    """augment.batch_draws with this data set's PCA and mean: (leading shape, seed) -> (flips, offsets)."""
    return functools.partial(
        augment.batch_draws,
        flip=flip,
        pca=pca_noise,
        eigenvalues=info.eigenvalues,
        eigenvectors=info.eigenvectors,
        pca_stddev=pca_stddev,
        rgb_mean=info.rgb_mean if mean_subtract else None,
    )


def finish_crops(images, labels, flips, offsets, jit_compile=True):
    """A batch of make_dataset(..., finish_on_device=True) -> the batch make_dataset
    gives without it: mirrored where `flips`, scaled to [0, 1], plus each image's
    RGB offset (PCA noise minus the mean), in one fused pass.

    Args:
      images: uint8 (B, S, S, 3) crops. labels: (B,). flips: bool (B,).
      offsets: float32 (B, 3).
      jit_compile: fuse with XLA (inside an XLA-compiled step it is part of it).

    Returns:
      (float32 images (B, S, S, 3), labels).
    """
    return augment.apply_draws(images, flips, offsets, jit_compile=jit_compile), labels


def _with_draws(index, batch, seed, draws):
    """(images, labels) -> (images, labels, flips, offsets) of this batch's seed."""
    images, labels = batch
    flips, offsets = draws(tf.shape(images)[:-3], tf.random.experimental.stateless_fold_in(seed, index))
    return images, labels, flips, offsets


def _finish(index, batch, seed, draws):
    return finish_crops(*_with_draws(index, batch, seed, draws))


def _eval_draws(images, labels, draws):
    """(images, labels) -> (images, labels, flips, offsets): evaluation's draws (no flips, minus the mean)."""
    return (images, labels, *draws(tf.shape(images)[:-3], tf.constant([0, 0], tf.int64)))


def _finish_eval(images, labels, draws):
    return finish_crops(*_eval_draws(images, labels, draws))


def _skip_undecodable(ds, skipped):
    """When skipping, also drop images that pass the JPEG check but fail to decode
    (a damaged header): tf.data logs each one; they are not in `skipped`'s counts."""
    if skipped is None:
        return ds
    return ds.ignore_errors(log_warning=True)


def make_dataset(
    data_dir,
    split,
    batch_size,
    *,
    training,
    image_size=227,
    info=None,
    input_context=None,
    seed=None,
    deterministic=False,
    random_crop=True,
    flip=True,
    pca_noise=True,
    pca_stddev=0.1,
    mean_subtract=True,
    ten_crop=False,
    skip_corrupt=False,
    repeat=None,
    shuffle_buffer=None,
    finish_on_device=False,
):
    """Batches of (images, labels) from the TFRecord shards of one split.

    Args:
      data_dir: directory of the shards and metadata.json (local or gs://).
      split: "train" or "validation" (the shard name prefix).
      batch_size: the GLOBAL batch size; with an input_context each pipeline
        makes batches of input_context.get_per_replica_batch_size(batch_size).
      training: True for shuffled, repeated, augmented batches of exactly the
        batch size; False for every example once in file order, the last
        batch possibly smaller, centre crops (or 10 views).
      image_size: side of the crops (the paper: 227).
      info: a DataInfo; None reads it with read_data_info(data_dir).
      input_context: a tf.distribute.InputContext (from
        strategy.distribute_datasets_from_function): this pipeline reads every
        num_input_pipelines-th shard, starting at input_pipeline_id.
      seed: int seed of shuffling and augmentation; None for a random one.
      deterministic: keep element order fixed (with a seed, runs repeat exactly).
      random_crop, flip, pca_noise: the training augmentations, switchable for ablations.
      pca_stddev: standard deviation of the PCA draws a_i (the paper: 0.1).
      mean_subtract: subtract info.rgb_mean from the [0, 1] pixels.
      ten_crop: evaluation only: images are (B, 10, S, S, 3), the paper's 10 views.
      skip_corrupt: False to fail on a corrupt shard or JPEG with a message
        naming it; True to skip, log and count it in `shard_reader.SKIPPED`;
        or a SkippedRecords to count into.
      repeat: number of passes; None means forever for training, once for evaluation.
      shuffle_buffer: training's shuffle buffer; None: min(10,000, the set), 0: none.
      finish_on_device: stop at the uint8 crops and add each batch's draws (in
        evaluation: no flips, minus the mean); `finish_crops(*batch)` turns such a
        batch into the batch this function returns without it (same seed and switches).

    Returns:
      A tf.data.Dataset of (float32 images (B, S, S, 3) or (B, 10, S, S, 3), int32 labels (B,)),
      or with finish_on_device of (uint8 images (B, S, S, 3) or (B, 10, S, S, 3), int32 labels (B,),
      bool flips (B,) or (B, 10), float32 RGB offsets (B, 3) or (B, 10, 3)).

    Raises:
      ValueError: bad arguments; FileNotFoundError: no shards.
    """
    _check_arguments(batch_size, image_size, training, ten_crop, repeat, shuffle_buffer)
    if info is None:
        info = data_info_lib.read_data_info(data_dir)
    skipped = shard_reader.skipped_records(skip_corrupt)

    files, per_replica = _files_and_batch(data_dir, split, batch_size, input_context)
    base_seed, shuffle_seed = _seeds(seed, input_context)
    ds = _examples(files, skipped, info, training, shuffle_seed, deterministic)
    ds = _shuffle_and_repeat(ds, training, shuffle_buffer, info.counts.get(split), shuffle_seed, repeat)
    crops = crop_geometry(info.image_size, image_size)
    if training:
        draws = _draws(info, flip, pca_noise, pca_stddev, mean_subtract)
        ds = _training_batches(ds, per_replica, image_size, random_crop, base_seed, crops, draws, skipped, finish_on_device)
    else:
        draws = _draws(info, False, False, pca_stddev, mean_subtract)
        ds = _evaluation_batches(ds, per_replica, image_size, ten_crop, crops, draws, skipped, finish_on_device)
    # One batch of 10 views in flight: each is ten centre-crop batches of crops.
    return ds.prefetch(1 if ten_crop else AUTOTUNE).with_options(_options(deterministic, input_context))


def _check_arguments(batch_size, image_size, training, ten_crop, repeat, shuffle_buffer):
    require_positive_int("batch_size", batch_size)
    require_positive_int("image_size", image_size)
    if ten_crop and training:
        raise ValueError("ten_crop is an evaluation mode. Received: ten_crop=True with training=True")
    if repeat is not None:
        require_positive_int("repeat", repeat)
    if shuffle_buffer is not None and (not isinstance(shuffle_buffer, int) or shuffle_buffer < 0):
        raise ValueError("expected shuffle_buffer to be an int >= 0. Received: shuffle_buffer=%r" % (shuffle_buffer,))


def _files_and_batch(data_dir, split, batch_size, input_context):
    """(the shards this input pipeline reads, its batch size: its replica's share of the global batch)."""
    files = shard_reader.list_shards(data_dir, split)
    if input_context is None:
        return files, batch_size
    per_replica = input_context.get_per_replica_batch_size(batch_size)
    return shard_reader.shard_files(files, input_context), per_replica


def _seeds(seed, input_context):
    """(augmentation seed tensor, shuffle seed) of this input pipeline; a random seed when `seed` is None."""
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    # Each input pipeline augments with its own random stream.
    pipeline = 0 if input_context is None else input_context.input_pipeline_id
    return tf.constant([seed, pipeline], tf.int64), (seed * 1_000_003 + pipeline) % (2**31)


def _shuffle_and_repeat(ds, training, shuffle_buffer, known_count, shuffle_seed, repeat):
    """Training: shuffled examples, repeated (forever unless `repeat`); evaluation: `repeat` passes in file order."""
    if training:
        if shuffle_buffer is None:
            shuffle_buffer = min(DEFAULT_SHUFFLE_BUFFER, known_count) if known_count else DEFAULT_SHUFFLE_BUFFER
        if shuffle_buffer > 1:
            # Shuffle before repeat, so an epoch is seen whole before the next begins.
            ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed + 1, reshuffle_each_iteration=True)
        return ds.repeat(repeat)  # None: forever
    if repeat is not None and repeat > 1:
        return ds.repeat(repeat)
    return ds


def _examples(files, skipped, info, training, shuffle_seed, deterministic):
    """The checked examples of `files`, interleaved (the files shuffled first when training)."""
    sizes = [tf.io.gfile.stat(f).length for f in files]
    ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(sizes, tf.int64)))
    if training:
        ds = ds.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.interleave(
        _plain(lambda path, size: shard_reader.read_shard(path, size, skipped, info.num_classes, info.label_offset)),
        cycle_length=min(len(files), _MAX_CYCLE_LENGTH),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )


def _training_batches(ds, per_replica, image_size, random_crop, base_seed, crops, draws, skipped, finish_on_device):
    """Random crops, batched; then each batch's flips and colour noise (drawn, or also applied)."""
    # Index every example after repeat: its crop seed differs in every epoch.
    ds = ds.enumerate().map(
        _plain(functools.partial(
            _decode_train,
            image_size=image_size,
            random_crop=random_crop,
            seed=tf.random.experimental.stateless_fold_in(base_seed, 0),
            reference=crops[0],
            plain=crops[1],
        )),
        num_parallel_calls=AUTOTUNE,
    )
    ds = _skip_undecodable(ds, skipped)
    # drop_remainder: every step has the same static batch shape, which
    # strategies and XLA need.
    ds = ds.batch(per_replica, drop_remainder=True)
    # The random draws of flips and colour noise: a few numbers per batch.
    # finish_on_device leaves the pixel work to finish_crops in the train step.
    finish = functools.partial(
        _with_draws if finish_on_device else _finish,
        seed=tf.random.experimental.stateless_fold_in(base_seed, 1),
        draws=draws,
    )
    return ds.enumerate().map(_plain(finish), num_parallel_calls=AUTOTUNE)


def _evaluation_batches(ds, per_replica, image_size, ten_crop, crops, draws, skipped, finish_on_device):
    """Centre crops (or the 10 views), batched with the remainder, scaled and mean-subtracted
    (or, with finish_on_device, left uint8 beside the draws that finish them)."""
    decode = functools.partial(_decode_eval, image_size=image_size, ten_crop=ten_crop, reference=crops[0], plain=crops[1])
    ds = ds.map(_plain(decode), num_parallel_calls=AUTOTUNE)
    ds = _skip_undecodable(ds, skipped)
    # Keep the remainder: every validation example is counted once.
    ds = ds.batch(per_replica, drop_remainder=False)
    finish = functools.partial(_eval_draws if finish_on_device else _finish_eval, draws=draws)
    return ds.map(_plain(finish), num_parallel_calls=AUTOTUNE)


def _options(deterministic, input_context):
    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is not None:
        # Already sharded by file above; stop tf.distribute from sharding again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def decode_and_center_crop(jpeg_bytes, image_size, rgb_mean, stored_size=None):
    """Evaluation preprocessing of one JPEG, for the exported model's serving signature.

    Args:
      jpeg_bytes: scalar string tensor.
      image_size: int, crop side.
      rgb_mean: 3 floats ([0, 1] scale) to subtract, or None.
      stored_size: the data set's stored square side (metadata.json's
        image_size), or None for images of any size.

    Returns:
      float32 tensor (image_size, image_size, 3), the same values make_dataset
      gives for this image with training=False.
    """
    image = augment.to_float(decode_centre(jpeg_bytes, image_size, *crop_geometry(stored_size, image_size)))
    if rgb_mean is not None:
        image = augment.subtract_mean(image, rgb_mean)
    return image


def delay_batches(dataset, seconds):
    """Test aid (--debug_input_sleep_ms): `dataset` with a sleep of `seconds` before each batch.

    The sleep comes after the pipeline's own prefetch and tf.data injects no
    prefetch after it, so it runs when a step asks for its batch: each step
    waits the whole sleep, an input-bound run on purpose.
    """

    def sleep():
        time.sleep(seconds)
        return 0

    def delayed(*batch):
        slept = tf.py_function(sleep, [], tf.int32)
        with tf.control_dependencies([slept]):
            return tuple(tf.identity(t) for t in batch)

    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    return dataset.map(delayed).with_options(options)
