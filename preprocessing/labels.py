"""Class lists, class names and validation label files, read at launch.

Every reader takes the file's text (the `read_*` wrappers fetch it through
Beam's `FileSystems`, so local and `gs://` paths behave the same) and raises
`cli.UsageError` with the file and line at fault: a wrong label file is a user
mistake, one line on stderr.
"""
import csv
import io

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from cli import UsageError


def stem(name):
    """`ILSVRC2012_val_00000001.JPEG` -> `ILSVRC2012_val_00000001` (label key)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def read_text(path, flag):
    """The UTF-8 text of a flag's file (a byte-order mark is dropped)."""
    if not FileSystems.exists(path):
        raise UsageError("%s: file not found. Received: %s" % (flag, path))
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return f.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError("%s: cannot read %s (%s)" % (flag, path, err)) from err


def parse_class_list(text, source="--synsets"):
    """Parses a class list: `LOC_synset_mapping.txt`, one synset per line (Tiny
    ImageNet's `wnids.txt`), or the devkit's `map_clsloc.txt` (`n02119789 1 kit_fox`).

    Labels are indices into the SORTED synset list (the standard ImageNet
    order), whatever order the file lists them in.

    Args:
      text: the file's contents.
      source: name used in error messages.

    Returns:
      (synsets, names): sorted list of synsets, dict synset -> readable name.

    Raises:
      UsageError: empty file or a synset listed twice.
    """
    names = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(None, 1)
        synset = parts[0]
        name = parts[1].strip() if len(parts) > 1 else synset
        devkit = name.split(None, 1)
        if len(devkit) == 2 and devkit[0].isdigit():  # map_clsloc.txt: "<id> <name_with_underscores>"
            name = devkit[1].replace("_", " ")
        if synset in names:
            raise UsageError("%s lists class %s twice (line %d)" % (source, synset, number))
        names[synset] = name
    if not names:
        raise UsageError("%s is empty: expected one class per line" % source)
    return sorted(names), names


def parse_class_names(text, source="--class_names"):
    """Parses WordNet's `words.txt` (`n02056570<TAB>king penguin, Aptenodytes patagonica`).

    The file names far more synsets than any data set has classes (every
    WordNet noun); the caller keeps the ones it needs (`names_of`). A class
    is named by the first of its comma-separated names, the common one.

    Returns:
      dict synset -> name.

    Raises:
      UsageError: empty file, or a line without a name.
    """
    names = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t", 1) if "\t" in line else line.split(None, 1)
        name = parts[1].split(",")[0].strip() if len(parts) == 2 else ""
        if not name:
            raise UsageError("%s line %d: expected '<synset><TAB><names>' as in words.txt. Received: %r" % (source, number, line))
        names.setdefault(parts[0].strip(), name)
    if not names:
        raise UsageError("%s is empty: expected '<synset><TAB><names>' lines" % source)
    return names


def names_of(classes, names, source="--class_names"):
    """{synset: name} of exactly `classes`; a class without a name is a usage error."""
    missing = [synset for synset in classes if synset not in names]
    if missing:
        raise UsageError(
            "class %s is not in %s (%d of %d classes have no name there)" % (missing[0], source, len(missing), len(classes))
        )
    return {synset: names[synset] for synset in classes}


def parse_devkit_classes(text, source="--devkit_classes"):
    """Parses the devkit's `map_clsloc.txt` (`n02119789 1 kit_fox`).

    Returns:
      (id_to_synset, names): dict ILSVRC2012_ID -> synset, dict synset -> name.
    """
    ids, names = {}, {}
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[1].isdigit():
            raise UsageError(
                "%s line %d: expected '<synset> <ILSVRC2012_ID> <name>' as in map_clsloc.txt. Received: %r"
                % (source, number, line)
            )
        ids[int(parts[1])] = parts[0]
        names[parts[0]] = " ".join(parts[2:]).replace("_", " ") or parts[0]
    if not ids:
        raise UsageError("%s is empty: expected map_clsloc.txt lines" % source)
    return ids, names


def _file_synset_row(line):
    """`<file> <synset>`, or tab-separated `<file> <synset> [extra columns]`
    (Tiny ImageNet's val_annotations.txt carries a bounding box) -> (file,
    synset); None for any other line."""
    if "\t" in line:
        parts = [part.strip() for part in line.split("\t")]
        return (parts[0], parts[1]) if len(parts) >= 2 and parts[0] and parts[1] else None
    parts = line.split()
    return (parts[0], parts[1]) if len(parts) == 2 else None


def _devkit_labels(lines, id_to_synset, source):
    if id_to_synset is None:
        raise UsageError(
            "%s holds devkit class IDs (ILSVRC2012_validation_ground_truth.txt); "
            "pass --devkit_classes map_clsloc.txt to map them to synsets" % source
        )
    labels = {}
    for index, line in enumerate(lines, 1):
        if not line:
            continue
        if int(line) not in id_to_synset:
            raise UsageError(
                "%s line %d: class ID %s is not in --devkit_classes (IDs %d..%d)"
                % (source, index, line, min(id_to_synset), max(id_to_synset))
            )
        labels["ILSVRC2012_val_%08d" % index] = id_to_synset[int(line)]
    return labels


def parse_val_labels(text, id_to_synset=None, source="--val_labels"):
    """Parses validation labels into {image stem: synset}.

    Accepted formats, detected from the contents:
      - the devkit's `ILSVRC2012_validation_ground_truth.txt`: one ILSVRC2012_ID
        per line (devkit order, mapped through `id_to_synset`), line i labels
        `ILSVRC2012_val_%08d`;
      - one synset per line, line i labels `ILSVRC2012_val_%08d`;
      - `<file name> <synset>` per line, or tab-separated `<file name> <synset>
        [extra columns]` (Tiny ImageNet's `val_annotations.txt`);
      - Kaggle's `LOC_val_solution.csv` (`ImageId,PredictionString`, the first
        token of PredictionString is the synset).
    A final newline is optional in every format.

    Raises:
      UsageError: unknown format, devkit IDs without `id_to_synset`, or an ID
        that `map_clsloc.txt` does not have.
    """
    lines = [line.strip() for line in text.splitlines()]
    body = [line for line in lines if line]
    if not body:
        raise UsageError("%s is empty" % source)
    labels = {}
    if body[0].lower().startswith("imageid"):
        for row in csv.DictReader(io.StringIO(text)):
            prediction = (row.get("PredictionString") or "").split()
            if not row.get("ImageId") or not prediction:
                raise UsageError("%s: expected ImageId,PredictionString rows. Received: %r" % (source, row))
            labels[stem(row["ImageId"])] = prediction[0]
        return labels
    if all(line.isdigit() for line in body):
        return _devkit_labels(lines, id_to_synset, source)
    if all(len(line.split()) == 1 for line in body):
        for index, line in enumerate(lines, 1):
            if line:
                labels["ILSVRC2012_val_%08d" % index] = line
        return labels
    rows = [_file_synset_row(line) for line in body]
    if all(rows):
        return {stem(name): synset for name, synset in rows}
    raise UsageError(
        "%s: unknown label format (expected devkit IDs, one synset per line, '<file> <synset>' lines, "
        "tab-separated '<file> <synset> ...' rows or LOC_val_solution.csv). First line: %r" % (source, body[0])
    )


def read_class_list(path):
    return parse_class_list(read_text(path, "--synsets"), "--synsets %s" % path)


def read_class_names(path):
    return parse_class_names(read_text(path, "--class_names"), "--class_names %s" % path)


def read_devkit_classes(path):
    return parse_devkit_classes(read_text(path, "--devkit_classes"), "--devkit_classes %s" % path)


def read_val_labels(path, id_to_synset=None):
    return parse_val_labels(read_text(path, "--val_labels"), id_to_synset, "--val_labels %s" % path)
