"""trainer.visualize: the grid of augmented inputs as a PNG and a TensorBoard image, and its user errors."""
import numpy as np
import tensorflow as tf

from tests.helpers.trainer_data import CROP, RGB_MEAN
from trainer import visualize


def test_visualize_writes_png_and_tensorboard_image(data, tmp_path, capsys):
    directory, _, _ = data
    png, logdir = tmp_path / "grid.png", tmp_path / "logs"
    code = visualize.main(
        ["--data_dir", directory, "--output_png", str(png), "--log_dir", str(logdir),
         "--num_images", "6", "--image_size", "67"]
    )
    assert code == 0
    assert "Wrote a grid of 6 augmented 67x67 examples" in capsys.readouterr().out
    grid = tf.io.decode_png(png.read_bytes()).numpy()
    # 3 columns x 2 rows of 67 px with 2 px borders.
    assert grid.shape == (2 * 69 + 2, 3 * 69 + 2, 3)
    assert grid[0].min() == 255 and grid[2:69, 2:69].std() > 10  # white border, a real image inside
    events = list(logdir.glob("events.out.tfevents.*"))
    assert len(events) == 1
    tags = []
    for record in tf.data.TFRecordDataset(str(events[0])):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            tags.append(value.tag)
            decoded = tf.io.decode_png(tf.make_ndarray(value.tensor)[2]).numpy()
            np.testing.assert_array_equal(decoded, grid)
    assert tags == ["augmented_inputs"]


def test_visualize_same_seed_gives_the_same_grid(data):
    directory, _, _ = data
    # A batch of every training example, from all 4 shards read in parallel:
    # without deterministic=True the interleave hands them over in the order
    # they finish, so the grid differs from run to run.
    grids = [visualize.augmented_grid(directory, num_images=24, image_size=CROP, seed=7) for _ in range(4)]
    for grid, labels in grids[1:]:
        np.testing.assert_array_equal(labels, grids[0][1])
        np.testing.assert_array_equal(grid, grids[0][0])
    other, _ = visualize.augmented_grid(directory, num_images=24, image_size=CROP, seed=8)
    assert not np.array_equal(other, grids[0][0])


def test_visualize_user_error_exits_2(tmp_path, capsys):
    code = visualize.main(
        ["--data_dir", str(tmp_path), "--output_png", str(tmp_path / "g.png"), "--num_classes", "3"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No TFRecord shards match" in err and "Traceback" not in err


def test_make_grid_undoes_mean():
    images = np.zeros((2, 3, 4, 3), np.float32) - np.float32(RGB_MEAN)
    grid = visualize.make_grid(images, RGB_MEAN, columns=2, border=1)
    assert grid.shape == (5, 11, 3)
    np.testing.assert_array_equal(grid[1:4, 1:5], 0)
    np.testing.assert_array_equal(grid[0], 255)
