"""Where images come from: class lists, label files, folders and tars.

All file access goes through Beam's `FileSystems`, so local paths and `gs://`
paths behave the same. Listing runs inside the pipeline (one listing task per
folder or tar, one per inner class tar), so a Dataflow job never carries a
million file names in its job graph.

An input is described by a `Ref`: the file (and for a tar member, its byte
offset and size inside the tar, which is read directly without extraction) and
its class as the layout states it (class folder, inner class tar, or None for a
flat validation folder whose labels come from a label file).
"""
import collections
import csv
import io
import os
import tarfile

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

# One input image. `offset`/`size` locate a tar member inside `path` (None for a
# plain file); `klass` is the class named by the layout or None (flat).
Ref = collections.namedtuple("Ref", ["split", "path", "offset", "size", "klass", "name"])

# One input that could not become an example.
Reject = collections.namedtuple("Reject", ["path", "split", "reason"])

NOT_IN_CLASS = "not in a class folder or class tar"


class UserError(ValueError):
    """A mistake in the user's flags or files: reported as one line, exit 2."""


def display_path(ref):
    """`path` for files, `tar!member name` for tar members (as listed in rejects)."""
    if ref.offset is None:
        return ref.path
    return "%s!%s" % (ref.path, ref.name)


def stem(name):
    """`ILSVRC2012_val_00000001.JPEG` -> `ILSVRC2012_val_00000001` (label key)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def _read_text(path, flag):
    if not FileSystems.exists(path):
        raise UserError("%s: file not found. Received: %s" % (flag, path))
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return f.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError("%s: cannot read %s (%s)" % (flag, path, err)) from err


# ---------------------------------------------------------------- class lists


def parse_class_list(text, source="--synsets"):
    """Parses a class list: `LOC_synset_mapping.txt`, one synset per line, or
    the devkit's `map_clsloc.txt` (`n02119789 1 kit_fox`).

    Labels are indices into the SORTED synset list (the standard ImageNet
    order), whatever order the file lists them in.

    Args:
      text: the file's contents.
      source: name used in error messages.

    Returns:
      (synsets, names): sorted list of synsets, dict synset -> readable name.

    Raises:
      UserError: empty file or a synset listed twice.
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
            raise UserError("%s lists class %s twice (line %d)" % (source, synset, number))
        names[synset] = name
    if not names:
        raise UserError("%s is empty: expected one class per line" % source)
    return sorted(names), names


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
            raise UserError(
                "%s line %d: expected '<synset> <ILSVRC2012_ID> <name>' as in map_clsloc.txt. Received: %r"
                % (source, number, line)
            )
        ids[int(parts[1])] = parts[0]
        names[parts[0]] = " ".join(parts[2:]).replace("_", " ") or parts[0]
    if not ids:
        raise UserError("%s is empty: expected map_clsloc.txt lines" % source)
    return ids, names


def parse_val_labels(text, id_to_synset=None, source="--val_labels"):
    """Parses validation labels into {image stem: synset}.

    Accepted formats, detected from the contents:
      - the devkit's `ILSVRC2012_validation_ground_truth.txt`: one ILSVRC2012_ID
        per line (devkit order, mapped through `id_to_synset`), line i labels
        `ILSVRC2012_val_%08d`;
      - one synset per line, line i labels `ILSVRC2012_val_%08d`;
      - `<file name> <synset>` per line;
      - Kaggle's `LOC_val_solution.csv` (`ImageId,PredictionString`, the first
        token of PredictionString is the synset).

    Raises:
      UserError: unknown format, devkit IDs without `id_to_synset`, or an ID
        that `map_clsloc.txt` does not have.
    """
    lines = [line.strip() for line in text.splitlines()]
    body = [line for line in lines if line]
    if not body:
        raise UserError("%s is empty" % source)
    labels = {}
    if body[0].lower().startswith("imageid"):
        for row in csv.DictReader(io.StringIO(text)):
            prediction = (row.get("PredictionString") or "").split()
            if not row.get("ImageId") or not prediction:
                raise UserError("%s: expected ImageId,PredictionString rows. Received: %r" % (source, row))
            labels[stem(row["ImageId"])] = prediction[0]
        return labels
    if all(line.isdigit() for line in body):
        if id_to_synset is None:
            raise UserError(
                "%s holds devkit class IDs (ILSVRC2012_validation_ground_truth.txt); "
                "pass --devkit_classes map_clsloc.txt to map them to synsets" % source
            )
        for index, line in enumerate(lines, 1):
            if not line:
                continue
            if int(line) not in id_to_synset:
                raise UserError(
                    "%s line %d: class ID %s is not in --devkit_classes (IDs %d..%d)"
                    % (source, index, line, min(id_to_synset), max(id_to_synset))
                )
            labels["ILSVRC2012_val_%08d" % index] = id_to_synset[int(line)]
        return labels
    if all(len(line.split()) == 1 for line in body):
        for index, line in enumerate(lines, 1):
            if line:
                labels["ILSVRC2012_val_%08d" % index] = line
        return labels
    if all(len(line.split()) == 2 for line in body):
        for line in body:
            name, synset = line.split()
            labels[stem(name)] = synset
        return labels
    raise UserError(
        "%s: unknown label format (expected devkit IDs, one synset per line, "
        "'<file> <synset>' lines or LOC_val_solution.csv). First line: %r" % (source, body[0])
    )


def read_class_list(path):
    return parse_class_list(_read_text(path, "--synsets"), "--synsets %s" % path)


def read_devkit_classes(path):
    return parse_devkit_classes(_read_text(path, "--devkit_classes"), "--devkit_classes %s" % path)


def read_val_labels(path, id_to_synset=None):
    return parse_val_labels(_read_text(path, "--val_labels"), id_to_synset, "--val_labels %s" % path)


# ---------------------------------------------------------------- layouts


def is_tar(path):
    return path.lower().endswith(".tar")


def _match(pattern, limit=None):
    result = FileSystems.match([pattern], limits=[limit] if limit else None)[0]
    return sorted(result.metadata_list, key=lambda m: m.path)


def describe_source(path, flag):
    """Checks a --train_dir/--val_dir at launch and names its layout.

    Returns:
      "tar", "classes" (class folders) or "flat".

    Raises:
      UserError: missing path, compressed tar, or an empty folder.
    """
    lowered = path.lower()
    if lowered.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        raise UserError(
            "%s: compressed tars cannot be read member by member; use the uncompressed .tar or "
            "a folder. Received: %s" % (flag, path)
        )
    if is_tar(path):
        if not FileSystems.exists(path):
            raise UserError("%s: tar not found. Received: %s" % (flag, path))
        return "tar"
    if "://" not in path and not os.path.isdir(path):
        raise UserError("%s: not a folder or .tar. Received: %s" % (flag, path))
    root = path.rstrip("/")
    if "://" not in root:
        entries = _entries(root)
        if any(is_dir for _, is_dir in entries):
            return "classes"
        if entries:
            return "flat"
    elif _match(root + "/*/*", limit=1):
        return "classes"
    elif _match(root + "/*", limit=1):
        return "flat"
    raise UserError("%s: folder is empty. Received: %s" % (flag, path))


# Mean size of an ILSVRC2012 train JPEG (about 110 kB), to estimate tar contents.
_MEAN_IMAGE_BYTES = 110_000


def estimate_count(path, layout):
    """A cheap estimate of the images in a source, or None when unknown
    (remote folders are not listed twice just to pick a runner mode)."""
    if "://" in path:
        return None
    if layout == "tar":
        return os.path.getsize(path) // _MEAN_IMAGE_BYTES
    if layout == "flat":
        return len(_entries(path.rstrip("/")))
    return sum(len(os.listdir(p)) for p, is_dir in _entries(path.rstrip("/")) if is_dir)


def tar_is_flat(path):
    """True when the tar's first file member sits at the top level (the val tar)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        with tarfile.open(fileobj=f, mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    return "/" not in member.name.strip("/") and not is_tar(member.name)
    return False


def _entries(root):
    """[(path, is_dir)] directly inside root, sorted.

    Local folders are listed with os.scandir: Beam's local match drops entries
    it cannot stat (a dangling link), and every input must be accounted for.
    """
    if "://" not in root:
        with os.scandir(root) as it:
            return sorted((os.path.join(root, e.name), e.is_dir()) for e in it)
    children = _match(root + "/*/*")
    parents = {meta.path.rsplit("/", 1)[0] for meta in children}
    return [(meta.path, meta.path in parents) for meta in _match(root + "/*")] + [
        (parent, True) for parent in sorted(parents)
    ]


def _files(folder):
    """[(path, is_dir)] of one class folder (remote: objects under the prefix)."""
    if "://" not in folder:
        return _entries(folder)
    return [(meta.path, False) for meta in _match(folder + "/*")]


def list_folder(root, split, layout):
    """Lists a folder of class folders ("classes") or a flat folder ("flat").

    Yields:
      Ref for every file; Reject for a file directly in a folder of class
      folders (it has no class) and for a folder where a file should be.
    """
    root = root.rstrip("/")
    entries = _entries(root)
    if "://" in root and layout == "flat":
        entries = [(meta.path, False) for meta in _match(root + "/*")]
    for path, is_dir in entries:
        name = path.rsplit("/", 1)[-1]
        if layout == "flat":
            if is_dir:
                yield Reject(path, split, "a folder inside a flat image folder")
            else:
                yield Ref(split, path, None, None, None, name)
            continue
        if not is_dir:
            yield Reject(path, split, NOT_IN_CLASS)
            continue
        for child, child_is_dir in _files(path):
            if child_is_dir:
                yield Reject(child, split, "a folder inside a class folder")
            else:
                yield Ref(split, child, None, None, name, child.rsplit("/", 1)[-1])


class _Window(io.RawIOBase):
    """A read-only view of bytes [start, start + size) of a seekable file, so
    tarfile can walk an inner tar in place without extracting it."""

    def __init__(self, f, start, size):
        super().__init__()
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, pos, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def read(self, n=-1):
        left = max(0, self._size - self._pos)
        n = left if n is None or n < 0 else min(n, left)
        if n == 0:
            return b""
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _walk_tar(fileobj, what, split):
    """Yields the file members of a tar; a corrupt tail becomes one Reject."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    yield member
                elif not member.isdir():
                    yield Reject("%s!%s" % (what, member.name), split, "not a regular file in the tar")
    except (tarfile.TarError, OSError, EOFError) as err:
        yield Reject(what, split, "corrupt tar (%s: %s); members before the damage were kept" % (type(err).__name__, err))


def list_tar(path, split):
    """Lists a tar read in place: ILSVRC2012_img_train.tar (a tar of per-class
    tars), ILSVRC2012_img_val.tar (flat), or a tar of class folders.

    Yields:
      Ref for each image member at the top level, ("nested", path, offset, size,
      klass) for each inner class tar (listed later by `list_inner_tar`, in
      parallel), and Reject for anything else.
    """
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for member in _walk_tar(f, path, split):
            if isinstance(member, Reject):
                yield member
                continue
            name = member.name.strip("/")
            if is_tar(name):
                yield ("nested", path, member.offset_data, member.size, stem(name))
                continue
            parts = name.split("/")
            klass = parts[-2] if len(parts) > 1 else None
            yield Ref(split, path, member.offset_data, member.size, klass, parts[-1] if klass else name)


def list_inner_tar(nested, split):
    """Lists one inner class tar (`n01440764.tar` inside the train tar).

    Args:
      nested: ("nested", path, offset, size, klass) from `list_tar`.

    Yields:
      Ref (offsets relative to the OUTER file) and Reject.
    """
    _, path, offset, size, klass = nested
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for member in _walk_tar(_Window(f, offset, size), "%s!%s.tar" % (path, klass), split):
            if isinstance(member, Reject):
                yield member
                continue
            name = member.name.strip("/").rsplit("/", 1)[-1]
            yield Ref(split, path, offset + member.offset_data, member.size, klass, name)


class RefReader:
    """Reads the bytes of Refs, keeping one open handle per tar."""

    def __init__(self):
        self._handles = {}

    def read(self, ref):
        if ref.offset is None:
            with FileSystems.open(ref.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                return f.read()
        f = self._handles.get(ref.path)
        if f is None:
            f = self._handles[ref.path] = FileSystems.open(ref.path, compression_type=CompressionTypes.UNCOMPRESSED)
        f.seek(ref.offset)
        data = f.read(ref.size)
        if len(data) != ref.size:
            raise OSError("tar member cut short: %d of %d bytes" % (len(data), ref.size))
        return data

    def close(self):
        for f in self._handles.values():
            f.close()
        self._handles = {}
