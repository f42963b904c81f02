"""The TensorFlow-free half of the record schema: names and constants.

`preprocessing.schema` re-exports every name here, so readers keep importing
`schema` and the two sides still share one definition. The Beam job imports
this module (and `preprocessing.records`) instead of `schema`: it never needs
TensorFlow, whose import costs each worker process seconds of start-up.
"""

# Feature keys (bytes unless noted).
ENCODED = "image/encoded"  # JPEG bytes
FORMAT = "image/format"  # b"JPEG"
HEIGHT = "image/height"  # int64
WIDTH = "image/width"  # int64
CHANNELS = "image/channels"  # int64, always 3
COLORSPACE = "image/colorspace"  # b"RGB"
LABEL = "image/class/label"  # int64, 0-based index into the sorted synset list
SYNSET = "image/class/synset"  # b"n01440764"
TEXT = "image/class/text"  # b"tench, Tinca tinca"
FILENAME = "image/filename"  # b"n01440764_10026.JPEG"

TRAIN = "train"
VALIDATION = "validation"
SPLITS = (TRAIN, VALIDATION)

METADATA_FILE = "metadata.json"
METADATA_FORMAT_VERSION = 1


def shard_name(split, index, num_shards):
    """`train-00000-of-01024`, the naming of the TensorFlow ImageNet shards."""
    return "%s-%05d-of-%05d" % (split, index, num_shards)


# The published ImageNet RGB PCA (pixels in [0, 1]), used when shards come
# without metadata.json (for example TensorFlow's own ImageNet shards).
# eigenvectors[i] belongs to eigenvalues[i].
IMAGENET_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGENVECTORS = (
    (-0.5675, -0.5808, -0.5836),
    (0.7192, -0.0045, -0.6948),
    (0.4009, -0.8140, 0.4203),
)
IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)
IMAGENET_RGB_STD = (0.229, 0.224, 0.225)
