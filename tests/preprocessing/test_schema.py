"""preprocessing.schema: the TensorFlow side re-exports the TensorFlow-free fields."""
from preprocessing import fields, schema


def test_schema_reexports_the_tensorflow_free_fields():
    public = [name for name in vars(fields) if not name.startswith("_")]
    assert {"ENCODED", "LABEL", "TRAIN", "SPLITS", "METADATA_FILE", "shard_name", "IMAGENET_EIGENVECTORS"} <= set(public)
    for name in public:
        assert getattr(schema, name) is getattr(fields, name), name
