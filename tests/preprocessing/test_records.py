"""preprocessing.records: hand-made tf.train.Example bytes equal TensorFlow's."""
import pytest
import tensorflow as tf

from preprocessing import records, schema
from tests.helpers.image_folders import EXAMPLE_CASES


@pytest.mark.parametrize("case", EXAMPLE_CASES)
def test_hand_made_example_bytes_equal_tensorflows_and_parse_back(case):
    encoded, label, height, width, synset, text, filename = case
    made = records.example_bytes(encoded, label, height, width, synset=synset, text=text, filename=filename)
    reference = schema.serialize_example(
        schema.make_example(encoded, label, height, width, synset=synset, text=text, filename=filename)
    )
    assert made == reference  # byte for byte: shards stay identical to the TensorFlow-made ones
    parsed = {k: v.numpy() for k, v in tf.io.parse_single_example(made, schema.FEATURE_SPEC).items()}
    as_bytes = lambda v: v.encode("utf-8") if isinstance(v, str) else v  # noqa: E731
    assert parsed == {
        schema.ENCODED: encoded, schema.FORMAT: b"JPEG", schema.HEIGHT: height, schema.WIDTH: width,
        schema.CHANNELS: 3, schema.COLORSPACE: b"RGB", schema.LABEL: label, schema.SYNSET: as_bytes(synset),
        schema.TEXT: as_bytes(text), schema.FILENAME: as_bytes(filename),
    }
