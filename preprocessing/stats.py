"""RGB mean, covariance and PCA over the training pixels (a Beam CombineFn).

The paper's colour augmentation needs the eigenvectors and eigenvalues of the
3x3 RGB covariance of the whole training set. Each image contributes its
pixel count, channel sums and channel Gram matrix (sum of x x^T). On the 0..255
scale these are integers, kept exactly in int64, so the result does not depend
on how Beam splits and merges the work: reruns give identical metadata. The
final statistics are computed in float64 on pixels scaled to [0, 1].
"""
import apache_beam as beam
import numpy as np

from preprocessing import fields

PIXEL_SCALE = "[0, 1]"
# Every 4th row and column: 4,096 regular-grid pixels of each 256x256 image
# (5 billion over ImageNet's training set), enough for a 3x3 covariance, at a
# small share of the job's per-image time; the measurements and the eigenvalues
# it gives against every 2nd: docs/decisions/preprocessing-rgb-sampling.md.
DEFAULT_STRIDE = 4


def sampling(stride):
    """The metadata's description of which pixels the statistics cover."""
    grid = "every pixel" if stride == 1 else "every %s row and column (1/%d of the pixels, a regular grid)" % (
        {2: "2nd", 3: "3rd"}.get(stride, "%dth" % stride), stride * stride)
    return (
        "%s of every training image as stored (after resize and centre crop, before JPEG "
        "encoding); population covariance (ddof=0)" % grid
    )


def pixel_moments(pixels, stride=1):
    """Exact moments of one image's pixels (of rows and columns 0, stride, ...).

    Args:
      pixels: HxWx3 uint8 array.
      stride: 1 for every pixel; 2 for every 2nd row and column, and so on.

    Returns:
      (count, sums, gram): int, int64[3] channel sums, int64[3, 3] sum of x x^T,
      all on the 0..255 scale.
    """
    # Integers only, so exact by construction: the channels go into three
    # contiguous uint16 rows (filled straight from the strided view, one pass),
    # a product of two 0..255 values fits uint16 (at most 65025), and the sums
    # are taken in int64. The six distinct channel products cost less than a
    # float64 matrix product (and no float rounding argument is needed).
    view = np.asarray(pixels)[::stride, ::stride]
    planes = np.empty((3, view.shape[0], view.shape[1]), np.uint16)
    planes[...] = view.transpose(2, 0, 1)
    planes = planes.reshape(3, -1)
    r, g, b = planes
    product = np.empty(planes.shape[1], np.uint16)  # one buffer: 2 bytes a pixel, even for huge images
    rr, gg, bb, rg, rb, gb = (
        np.multiply(x, y, out=product).sum(dtype=np.int64) for x, y in ((r, r), (g, g), (b, b), (r, g), (r, b), (g, b))
    )
    sums = planes.sum(axis=1, dtype=np.int64)
    gram = np.array([[rr, rg, rb], [rg, gg, gb], [rb, gb, bb]], np.int64)
    return planes.shape[1], sums, gram


def add_moments(accumulator, moments):
    """accumulator + moments, both (count, sums, gram); updates the arrays of
    `accumulator` in place (it must be one of create_accumulator's)."""
    count, sums, gram = accumulator
    sums += moments[1]
    gram += moments[2]
    return count + moments[0], sums, gram


class RgbMomentsCombineFn(beam.CombineFn):
    """Sums `pixel_moments` (of images, or already summed over several) into
    one (count, sums, gram) accumulator."""

    def create_accumulator(self):
        return 0, np.zeros(3, np.int64), np.zeros((3, 3), np.int64)

    def add_input(self, accumulator, moments):
        return add_moments(accumulator, moments)

    def merge_accumulators(self, accumulators):
        count, sums, gram = self.create_accumulator()
        for c, s, g in accumulators:
            count, sums, gram = count + c, sums + s, gram + g
        return count, sums, gram

    def extract_output(self, accumulator):
        return accumulator


def rgb_statistics(moments, stride=1):
    """Mean, std, covariance and PCA from summed moments (pixels in [0, 1]).

    Args:
      moments: (count, sums, gram) as summed by RgbMomentsCombineFn.
      stride: the pixel_moments stride, for the metadata's "sampling" text.

    Returns:
      The `rgb` dict of metadata.json (see schema.load_metadata), or None when
      there were no pixels. Eigenvalues are descending; eigenvectors[i] is the
      unit eigenvector of eigenvalues[i], its sign chosen to point the way of
      the published ImageNet eigenvector so the two are easy to compare.
    """
    count, sums, gram = moments
    if not count:
        return None
    mean = np.asarray(sums, np.float64) / count / 255.0
    second = np.asarray(gram, np.float64) / count / (255.0 * 255.0)
    cov = second - np.outer(mean, mean)
    cov = (cov + cov.T) / 2.0  # exact symmetry for eigh
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values = np.maximum(values[order], 0.0)
    vectors = vectors[:, order].T  # row i belongs to values[i]
    for i, reference in enumerate(fields.IMAGENET_EIGENVECTORS):
        if float(np.dot(vectors[i], reference)) < 0:
            vectors[i] = -vectors[i]
    return {
        "pixel_scale": PIXEL_SCALE,
        "mean": mean.tolist(),
        "std": np.sqrt(np.maximum(np.diag(cov), 0.0)).tolist(),
        "covariance": cov.tolist(),
        "eigenvalues": values.tolist(),
        "eigenvectors": vectors.tolist(),
        "pixels": int(count),
        "sampling": sampling(stride),
    }
