"""Reading inputs in place: plain files, tar members, members of inner tars.

Tars are never extracted: a member is read at its byte offset through one open
handle per tar, and an inner tar (a class tar inside ILSVRC2012_img_train.tar)
is walked through a window onto the outer file.
"""
import io
import tarfile

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


class Window(io.RawIOBase):
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


def walk_tar(fileobj, what):
    """The file members of a tar, in order.

    Yields:
      tarfile.TarInfo for each regular file; (display path, reason) for each
      member that is neither a file nor a folder, and for a corrupt tail
      (tarfile stops at the damage; the members before it were yielded).
    """
    try:
        with tarfile.open(fileobj=fileobj, mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    yield member
                elif not member.isdir():
                    yield "%s!%s" % (what, member.name), "not a regular file in the tar"
    except (tarfile.TarError, OSError, EOFError) as err:
        yield what, "corrupt tar (%s: %s); members before the damage were kept" % (type(err).__name__, err)


class RefReader:
    """Reads the bytes of listing.Refs, keeping one open handle per tar."""

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
