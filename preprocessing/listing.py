"""Where images come from: walking folders and tars into input references.

All file access goes through Beam's `FileSystems`, so local paths and `gs://`
paths behave the same. Listing runs inside the pipeline (one listing task per
folder or tar, one per inner class tar), so a Dataflow job never carries a
million file names in its job graph.

A file anywhere below a class folder belongs to that class, as in
torchvision's `ImageFolder` and Keras's `image_dataset_from_directory` (Tiny
ImageNet keeps its images in `train/<wnid>/images/`). A file that is not an
image by name (a sidecar such as `<wnid>_boxes.txt`, `.DS_Store`, `Thumbs.db`,
any hidden file) is skipped and listed with its reason, never decoded; a file
with an image name is an input, and becomes an example or a reject.
"""
import collections
import os
import tarfile

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from cli import UsageError
from preprocessing import labels, reader

# One input image. `offset`/`size` locate a tar member inside `path` (None for a
# plain file); `klass` is the class named by the layout or None (flat).
Ref = collections.namedtuple("Ref", ["split", "path", "offset", "size", "klass", "name"])

# One input that could not become an example.
Reject = collections.namedtuple("Reject", ["path", "split", "reason"])

# One file that is not an image by name: listed, counted, never decoded.
Skip = collections.namedtuple("Skip", ["path", "split", "reason"])

NOT_IN_CLASS = "not in a class folder or class tar"

# The extensions of the formats the job decodes (Pillow's readers for them are
# always built in); matched case-insensitively.
IMAGE_EXTENSIONS = frozenset(
    (".jpeg", ".jpg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm")
)

TINY_VAL_IMAGES, TINY_VAL_ANNOTATIONS = "images", "val_annotations.txt"


def display_path(ref):
    """`path` for files, `tar!member name` for tar members (as listed in rejects)."""
    if ref.offset is None:
        return ref.path
    return "%s!%s" % (ref.path, ref.name)


def skip_reason(relative):
    """Why a file is skipped, or None for an image name.

    Args:
      relative: the file's path below the listed folder (or tar), "/"-separated.
    """
    parts = [part for part in relative.split("/") if part]
    if any(part.startswith(".") for part in parts):
        return "hidden file (a name starting with '.')"
    extension = os.path.splitext(parts[-1])[1].lower() if parts else ""
    if extension in IMAGE_EXTENSIONS:
        return None
    return "not an image file name (%s)" % (("extension %s" % extension) if extension else "no extension")


def is_tar(path):
    return path.lower().endswith(".tar")


def _is_remote(path):
    return "://" in path


def _match(pattern, limit=None):
    result = FileSystems.match([pattern], limits=[limit] if limit else None)[0]
    return sorted(result.metadata_list, key=lambda m: m.path)


def tiny_imagenet_val(path):
    """(images folder, annotations file) when `path` is Tiny ImageNet's `val/`
    as downloaded (`images/` beside `val_annotations.txt`), else None."""
    if is_tar(path):
        return None
    root = path.rstrip("/")
    images = FileSystems.join(root, TINY_VAL_IMAGES)
    annotations = FileSystems.join(root, TINY_VAL_ANNOTATIONS)
    if not FileSystems.exists(annotations):
        return None
    found = os.path.isdir(images) if not _is_remote(root) else bool(_match(images + "/*", limit=1))
    return (images, annotations) if found else None


def describe_source(path, flag):
    """Checks a --train_dir/--val_dir at launch and names its layout.

    Returns:
      "tar", "classes" (class folders) or "flat".

    Raises:
      UsageError: missing path, compressed tar, or an empty folder.
    """
    lowered = path.lower()
    if lowered.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        raise UsageError(
            "%s: compressed tars cannot be read member by member; use the uncompressed .tar or "
            "a folder. Received: %s" % (flag, path)
        )
    if is_tar(path):
        if not FileSystems.exists(path):
            raise UsageError("%s: tar not found. Received: %s" % (flag, path))
        return "tar"
    if not _is_remote(path) and not os.path.isdir(path):
        raise UsageError("%s: not a folder or .tar. Received: %s" % (flag, path))
    root = path.rstrip("/")
    if not _is_remote(root):
        entries = _entries(root)
        if any(is_dir for _, is_dir in entries):
            return "classes"
        if entries:
            return "flat"
    elif _match(root + "/*/**", limit=1):  # "*" stops at "/", "**" does not
        return "classes"
    elif _match(root + "/*", limit=1):
        return "flat"
    raise UsageError("%s: folder is empty. Received: %s" % (flag, path))


def class_folders(path):
    """The class folders of a local folder of class folders (hidden ones aside),
    sorted: the class list the job will find, known at launch."""
    names = (os.path.basename(p) for p, is_dir in _entries(path.rstrip("/")) if is_dir)
    return sorted(name for name in names if not name.startswith("."))


# Mean size of an ILSVRC2012 train JPEG (about 110 kB), to estimate tar contents.
_MEAN_IMAGE_BYTES = 110_000


def estimate_count(path, layout):
    """A cheap estimate of the images in a source, or None when unknown
    (remote folders are not listed twice just to pick a runner mode)."""
    if _is_remote(path):
        return None
    if layout == "tar":
        return os.path.getsize(path) // _MEAN_IMAGE_BYTES
    if layout == "flat":
        return len(_entries(path.rstrip("/")))
    return sum(len(_walk_local(p)) for p, is_dir in _entries(path.rstrip("/")) if is_dir)


def tar_is_flat(path):
    """True when the tar's first file member sits at the top level (the val tar)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        with tarfile.open(fileobj=f, mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    return "/" not in _member_path(member.name) and not is_tar(member.name)
    return False


def _entries(root):
    """[(path, is_dir)] directly inside a local root, sorted.

    Listed with os.scandir: Beam's local match drops entries it cannot stat (a
    dangling link), and every input must be accounted for.
    """
    with os.scandir(root) as it:
        return sorted((os.path.join(root, e.name), e.is_dir()) for e in it)


def _walk_local(folder):
    """Every file below a local folder, sorted. Links to folders are followed,
    as torchvision's ImageFolder does; each real folder is walked once, so a
    link cycle cannot loop."""
    files, seen, stack = [], set(), [folder]
    while stack:
        current = stack.pop()
        real = os.path.realpath(current)
        if real in seen:
            continue
        seen.add(real)
        for path, is_dir in _entries(current):
            (stack if is_dir else files).append(path)
    return sorted(files)


def _files_below(root):
    """[(path, path relative to root)] of every file below a folder."""
    if not _is_remote(root):
        return [(path, os.path.relpath(path, root).replace(os.sep, "/")) for path in _walk_local(root)]
    # Object stores have no folders: "**" lists every object under the prefix;
    # zero-byte "folder/" placeholder objects are not files.
    return [(m.path, m.path[len(root) + 1:]) for m in _match(root + "/**") if not m.path.endswith("/")]


def _classify(split, path, relative, klass, name, offset=None, size=None):
    """One file below a listed root -> Skip, Reject (an image outside any class) or Ref."""
    what = path if offset is None else "%s!%s" % (path, name)
    reason = skip_reason(relative)
    if reason:
        return Skip(what, split, reason)
    return Ref(split, path, offset, size, klass, name)


def list_folder(root, split, layout):
    """Lists a folder of class folders ("classes") or a flat folder ("flat").

    Yields:
      Ref for every image below a class folder (or in a flat folder), Skip for
      every file that is not an image by name, and Reject for an image directly
      in a folder of class folders (it has no class) and for a folder inside a
      flat folder.
    """
    root = root.rstrip("/")
    if layout == "flat":
        entries = _entries(root) if not _is_remote(root) else [(m.path, False) for m in _match(root + "/*")]
        for path, is_dir in entries:
            name = path.rsplit("/", 1)[-1]
            if is_dir:
                yield Reject(path, split, "a folder inside a flat image folder")
            else:
                yield _classify(split, path, name, None, name)
        return
    for path, relative in _files_below(root):
        parts = relative.split("/")
        item = _classify(split, path, relative, parts[0] if len(parts) > 1 else None, parts[-1])
        if isinstance(item, Ref) and item.klass is None:
            item = Reject(path, split, NOT_IN_CLASS)
        yield item


def _member_path(name):
    """A member name without a leading "./" or "/" (tar's own spellings of the top)."""
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def tar_root(paths):
    """The folder a tar of class folders was made of, as a tuple of names.

    `tar cf train.tar train` stores `train/<class>/...`, `tar cf train.tar -C
    train .` stores `./<class>/...`: both mean the same class folders. The
    root is the folder path every member shares, when that folder holds at
    least two folders (the classes); otherwise the tar's top level is the
    root, so a tar of one class folder keeps that folder as the class. Hidden
    names (macOS's `._*` and `.DS_Store`) do not count.

    Args:
      paths: the member paths of the tar's files, "/"-separated.
    """
    folders = [tuple(p.split("/"))[:-1] for p in paths if not any(part.startswith(".") for part in p.split("/"))]
    if not folders:
        return ()
    common = folders[0]
    for folder in folders[1:]:
        while folder[: len(common)] != common:
            common = common[:-1]
    classes = {folder[len(common)] for folder in folders if len(folder) > len(common)}
    return common if len(classes) >= 2 else ()


def list_tar(path, split):
    """Lists a tar read in place: ILSVRC2012_img_train.tar (a tar of per-class
    tars), ILSVRC2012_img_val.tar (flat), or a tar of class folders at any
    depth below its root (see `tar_root`).

    The member headers are read once and kept (tarfile keeps them anyway): the
    root is known only once every member name is.

    Yields:
      Ref for each image member, ("nested", path, offset, size, klass) for each
      inner class tar at the top (listed later by `list_inner_tar`, in
      parallel), Skip for every member that is not an image by name, and
      Reject for anything else.
    """
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        found = list(reader.walk_tar(f, path))
    members = [(_member_path(m.name), m) for m in found if isinstance(m, tarfile.TarInfo)]
    root = tar_root([name for name, _ in members])
    for name, member in members:
        parts = tuple(name.split("/"))
        relative = parts[len(root):] if parts[: len(root)] == root else parts
        if len(relative) == 1 and is_tar(name) and not name.rsplit("/", 1)[-1].startswith("."):
            yield ("nested", path, member.offset_data, member.size, labels.stem(name))
            continue
        item = _classify(split, path, "/".join(relative), relative[0] if len(relative) > 1 else None, name,
                         member.offset_data, member.size)
        if isinstance(item, Ref):
            item = item._replace(name=parts[-1]) if item.klass else item
        yield item
    for damage in found:
        if not isinstance(damage, tarfile.TarInfo):
            yield Reject(damage[0], split, damage[1])


def list_inner_tar(nested, split):
    """Lists one inner class tar (`n01440764.tar` inside the train tar): every
    image member, at any depth, belongs to the inner tar's class.

    Args:
      nested: ("nested", path, offset, size, klass) from `list_tar`.

    Yields:
      Ref (offsets relative to the OUTER file), Skip and Reject.
    """
    _, path, offset, size, klass = nested
    what = "%s!%s.tar" % (path, klass)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for member in reader.walk_tar(reader.Window(f, offset, size), what):
            if not isinstance(member, tarfile.TarInfo):
                yield Reject(member[0], split, member[1])
                continue
            name = _member_path(member.name)
            yield _classify(split, path, name, klass, name.rsplit("/", 1)[-1], offset + member.offset_data, member.size)
