"""tf.train.Example bytes written by hand, without TensorFlow.

The job writes one Example per image. Building it as a protobuf message and
serialising it costs a few dozen microseconds and, above all, the TensorFlow
import in every worker. The wire format of the fixed feature set is simple, so
`example_bytes` writes it directly: the result is byte-for-byte what
`schema.serialize_example(schema.make_example(...))` gives (deterministic
serialisation writes map entries sorted by key), which
tests/test_preprocessing_units.py checks against TensorFlow.

Wire format (protobuf): Example{features=1} -> Features{map<string, Feature>
feature=1} whose entries are {key=1, value=2} -> Feature{bytes_list=1 |
int64_list=3} -> BytesList{repeated bytes value=1} / Int64List{repeated int64
value=1 [packed]}.
"""
from preprocessing import fields

# Wire tags: (field number << 3) | wire type, all length-delimited (type 2).
_TAG_1 = b"\x0a"  # field 1: Example.features, Features.feature, entry key, bytes_list, list values
_TAG_2 = b"\x12"  # field 2: the map entry's value
_TAG_3 = b"\x1a"  # field 3: Feature.int64_list


def _varint(value):
    """Base-128 varint; negative int64 values take ten bytes (two's complement)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag, payload):
    return tag + _varint(len(payload)) + payload


def _bytes_feature(value):
    return _delimited(_TAG_1, _delimited(_TAG_1, value))


def _int64_feature(value):
    return _delimited(_TAG_3, _delimited(_TAG_1, _varint(int(value))))


def _entry(key, feature):
    return _delimited(_TAG_1, _delimited(_TAG_1, key.encode("utf-8")) + _delimited(_TAG_2, feature))


def _bytes_entry_head(key, length):
    """Everything of a bytes entry before its `length` bytes of value, so the
    (large) JPEG bytes are copied once, into the final record, not per layer."""
    key = _delimited(_TAG_1, key.encode("utf-8"))
    inner = _TAG_1 + _varint(length)  # BytesList.value
    feature = _TAG_1 + _varint(len(inner) + length)  # Feature.bytes_list
    value = _TAG_2 + _varint(len(feature) + len(inner) + length)  # entry value
    return _TAG_1 + _varint(len(key) + len(value) + len(feature) + len(inner) + length) + key + value + feature + inner


def _utf8(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


# Entries that are the same in every example, encoded once.
_CONSTANT = {
    fields.FORMAT: _entry(fields.FORMAT, _bytes_feature(b"JPEG")),
    fields.CHANNELS: _entry(fields.CHANNELS, _int64_feature(3)),
    fields.COLORSPACE: _entry(fields.COLORSPACE, _bytes_feature(b"RGB")),
}
# Deterministic protobuf serialisation orders map entries by key.
_ORDER = tuple(
    sorted(
        (fields.ENCODED, fields.FORMAT, fields.HEIGHT, fields.WIDTH, fields.CHANNELS, fields.COLORSPACE,
         fields.LABEL, fields.SYNSET, fields.TEXT, fields.FILENAME),
        key=lambda key: key.encode("utf-8"),
    )
)


def example_bytes(encoded, label, height, width, synset="", text="", filename=""):
    """One serialised tf.train.Example of an RGB JPEG image.

    Args:
      encoded: JPEG bytes of a 3-channel 8-bit RGB image.
      label: 0-based class index.
      height, width: pixel size of the encoded image.
      synset, text, filename: str or bytes, stored for inspection and export.

    Returns:
      bytes equal to schema.serialize_example(schema.make_example(...)) of the
      same arguments.
    """
    encoded = _utf8(encoded)
    entries = dict(_CONSTANT)
    entries[fields.HEIGHT] = _entry(fields.HEIGHT, _int64_feature(height))
    entries[fields.WIDTH] = _entry(fields.WIDTH, _int64_feature(width))
    entries[fields.LABEL] = _entry(fields.LABEL, _int64_feature(label))
    entries[fields.SYNSET] = _entry(fields.SYNSET, _bytes_feature(_utf8(synset)))
    entries[fields.TEXT] = _entry(fields.TEXT, _bytes_feature(_utf8(text)))
    entries[fields.FILENAME] = _entry(fields.FILENAME, _bytes_feature(_utf8(filename)))
    parts = []
    for key in _ORDER:
        if key == fields.ENCODED:
            parts += [_bytes_entry_head(key, len(encoded)), encoded]
        else:
            parts.append(entries[key])
    size = sum(len(part) for part in parts)
    return b"".join([_TAG_1, _varint(size)] + parts)
