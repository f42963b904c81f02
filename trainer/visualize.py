"""Look at what the model sees: a grid of augmented training examples.

    python -m trainer.visualize --data_dir DIR --output_png grid.png [--log_dir LOG_DIR]

Takes one batch from `make_dataset(training=True)` with the same augmentation
switches as training, undoes the mean subtraction for display, and writes the
grid to a PNG and, with --log_dir, to TensorBoard (an image summary under
"augmented_inputs", the tag the training run writes its grid under).
"""
import sys

import numpy as np
import tensorflow as tf

import cli
from preprocessing import schema
from trainer import data_info
from trainer import datasets

IMAGE_TAG = "augmented_inputs"  # the TensorBoard tag of the grid, here and in trainer.summaries


def make_grid(images, rgb_mean=None, columns=None, border=2):
    """Tiles a batch of model inputs into one displayable image.

    Args:
      images: float array (N, H, W, 3) as the model sees it: [0, 1] pixels,
        minus rgb_mean when the pipeline subtracted it.
      rgb_mean: the 3 floats the pipeline subtracted, or None.
      columns: images per row; None for a near-square grid.
      border: pixels of white between and around images.

    Returns:
      uint8 array (rows * (H + border) + border, columns * (W + border) + border, 3).
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError("make_grid expected images of shape (N, H, W, 3), N > 0. Received: %s" % (images.shape,))
    if rgb_mean is not None:
        images = images + np.asarray(rgb_mean, np.float32)
    # PCA noise can push pixels slightly outside [0, 1]; clip only for display.
    pixels = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    n, h, w, _ = pixels.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.full((rows * (h + border) + border, columns * (w + border) + border, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        y, x = border + r * (h + border), border + c * (w + border)
        grid[y : y + h, x : x + w] = pixels[i]
    return grid


def write_png(grid, path):
    """Writes a uint8 (H, W, 3) grid as a PNG (local or gs:// path)."""
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(tf.io.encode_png(grid).numpy())


def write_tensorboard(grid, log_dir, step=0, name=IMAGE_TAG):
    """Writes the grid as a TensorBoard image summary in `log_dir`."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        tf.summary.image(name, grid[np.newaxis], step=step)
    writer.flush()
    writer.close()


def augmented_grid(data_dir, num_images=16, image_size=227, seed=0, info=None, **augmentation):
    """One grid of `num_images` augmented training examples of `data_dir`.

    Args:
      data_dir: shard directory.
      num_images: examples in the grid.
      image_size: crop side.
      seed: seed of the draw: the same seed gives the same grid (the
        pipeline runs with deterministic=True).
      info: DataInfo, or None to read it from metadata.json.
      **augmentation: make_dataset switches (random_crop, flip, pca_noise, pca_stddev, mean_subtract).

    Returns:
      (uint8 grid, int labels of the examples).
    """
    info = info or data_info.read_data_info(data_dir)
    ds = datasets.make_dataset(
        data_dir, schema.TRAIN, num_images, training=True, image_size=image_size, info=info, seed=seed,
        shuffle_buffer=max(num_images, 64), deterministic=True, **augmentation,  # same seed, same grid
    )
    images, labels = next(iter(ds))
    mean = info.rgb_mean if augmentation.get("mean_subtract", True) else None
    return make_grid(images.numpy(), mean), labels.numpy()


def _parse_args(argv):
    parser = cli.Parser(prog="python -m trainer.visualize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="directory of train-*-of-* shards")
    parser.add_argument("--output_png", required=True, help="PNG file to write")
    parser.add_argument("--log_dir", default=None, help="also write a TensorBoard image summary here")
    parser.add_argument("--num_images", type=int, default=16)
    parser.add_argument("--image_size", type=int, default=227)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_classes", type=int, default=None, help="only for shards without metadata.json")
    parser.add_argument("--label_offset", type=int, default=None, help="only for shards without metadata.json")
    parser.add_argument("--no_random_crop", action="store_true")
    parser.add_argument("--no_flip", action="store_true")
    parser.add_argument("--no_pca_noise", action="store_true")
    parser.add_argument("--pca_stddev", type=float, default=0.1)
    return parser.parse_args(argv)


def main(argv=None):
    """Entry point; returns 0 on success, 2 on a user error (one line on stderr)."""
    try:
        args = _parse_args(argv)
    except cli.UsageError as err:
        print("python -m trainer.visualize: error: %s" % err, file=sys.stderr)
        return cli.EXIT_USAGE
    except SystemExit as done:  # --help printed its text
        return int(done.code or 0)
    try:
        if args.num_images < 1:
            raise ValueError("expected --num_images >= 1. Received: %d" % args.num_images)
        info = data_info.read_data_info(args.data_dir, args.label_offset, args.num_classes)
        grid, labels = augmented_grid(
            args.data_dir, args.num_images, args.image_size, args.seed, info,
            random_crop=not args.no_random_crop, flip=not args.no_flip, pca_noise=not args.no_pca_noise,
            pca_stddev=args.pca_stddev,
        )
        write_png(grid, args.output_png)
        if args.log_dir:
            write_tensorboard(grid, args.log_dir)
    except (ValueError, FileNotFoundError, tf.errors.OpError) as err:
        message = err.message if isinstance(err, tf.errors.OpError) else str(err)
        print("trainer.visualize: error: %s" % message.strip().splitlines()[0], file=sys.stderr)
        return cli.EXIT_USAGE
    print(
        "Wrote a grid of %d augmented %dx%d examples (%dx%d px) to %s%s"
        % (len(labels), args.image_size, args.image_size, grid.shape[1], grid.shape[0], args.output_png,
           " and TensorBoard images to %s" % args.log_dir if args.log_dir else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
