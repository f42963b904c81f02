"""tf.train.Example bytes written by hand, without TensorFlow.

The job writes one Example per image. Building it as a protobuf message and
serialising it costs time per image and, above all, the TensorFlow import in
every worker (docs/decisions/preprocessing-runner.md). The wire format of the fixed feature set is simple, so
`example_bytes` writes it directly: the result is byte-for-byte what
`schema.serialize_example(schema.make_example(...))` gives (deterministic
serialisation writes map entries sorted by key), which
tests/preprocessing/test_records.py checks against TensorFlow.

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


_SMALL = tuple(bytes((i,)) for i in range(0x80))  # one-byte varints: most lengths here


def _varint(value):
    """Base-128 varint; negative int64 values take ten bytes (two's complement)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
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


def _key_field(key):
    return _delimited(_TAG_1, key.encode("utf-8"))


def _entry(key_field, feature):
    """One map entry {key, value: feature}, as Features.feature field 1."""
    return _delimited(_TAG_1, key_field + _delimited(_TAG_2, feature))


def _int64_entry(key_field, value):
    return _entry(key_field, _delimited(_TAG_3, _delimited(_TAG_1, _varint(int(value)))))


def _bytes_entry_head(key_field, length):
    """Everything of a bytes entry before its `length` bytes of value, so the
    value (the JPEG) is copied once, into the final record, not once per layer."""
    inner = _TAG_1 + _varint(length)  # BytesList.value
    feature = _TAG_1 + _varint(len(inner) + length)  # Feature.bytes_list
    value = _TAG_2 + _varint(len(feature) + len(inner) + length)  # the entry's value
    entry = len(key_field) + len(value) + len(feature) + len(inner) + length
    return _TAG_1 + _varint(entry) + key_field + value + feature + inner


def _bytes_entry(key_field, value):
    return _bytes_entry_head(key_field, len(value)) + value


def _utf8(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


# Deterministic protobuf serialisation writes map entries sorted by key; this
# is that order (checked below), spelled out so example_bytes is straight-line code.
_ORDER = (fields.CHANNELS, fields.LABEL, fields.SYNSET, fields.TEXT, fields.COLORSPACE, fields.ENCODED,
          fields.FILENAME, fields.FORMAT, fields.HEIGHT, fields.WIDTH)
if list(_ORDER) != sorted(_ORDER, key=lambda key: key.encode("utf-8")):
    raise AssertionError("records._ORDER must list the feature keys in sorted order. Received: %r" % (_ORDER,))
_LABEL, _SYNSET, _TEXT, _ENCODED, _FILENAME, _HEIGHT, _WIDTH = map(
    _key_field, (fields.LABEL, fields.SYNSET, fields.TEXT, fields.ENCODED, fields.FILENAME, fields.HEIGHT, fields.WIDTH)
)
# Entries that are the same in every example, encoded once.
_CHANNELS_ENTRY = _int64_entry(_key_field(fields.CHANNELS), 3)
_COLORSPACE_ENTRY = _bytes_entry(_key_field(fields.COLORSPACE), b"RGB")
_FORMAT_ENTRY = _bytes_entry(_key_field(fields.FORMAT), b"JPEG")


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
    parts = [
        _CHANNELS_ENTRY,
        _int64_entry(_LABEL, label),
        _bytes_entry(_SYNSET, _utf8(synset)),
        _bytes_entry(_TEXT, _utf8(text)),
        _COLORSPACE_ENTRY,
        _bytes_entry_head(_ENCODED, len(encoded)),
        encoded,
        _bytes_entry(_FILENAME, _utf8(filename)),
        _FORMAT_ENTRY,
        _int64_entry(_HEIGHT, height),
        _int64_entry(_WIDTH, width),
    ]
    size = 0
    for part in parts:
        size += len(part)
    parts[:0] = [_TAG_1, _varint(size)]  # Example.features
    return b"".join(parts)
