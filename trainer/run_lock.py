"""One writer per model directory: a lock file a training run takes before it writes anything.

`RunLock(directories, ...)` puts a file `writer.lock` in each directory (the model
directory, and the checkpoint directory when it lies elsewhere) holding who wrote it
(host, process id, start time, a random token) and when it was last refreshed. A
thread rewrites the refresh time `stale_seconds / REFRESHES_PER_INTERVAL` apart
while the run lasts; `release` removes the files (at the end of the run, after
SIGTERM and on errors: the caller holds it in a `with`). A second run finding a
lock is refused (`LockBusy`, one line naming the holder), unless the lock is
known to be dead:

- on the same host, when the holder's process id is gone (or now belongs to a
  process started at another time: the id was reused), e.g. after kill -9;
- anywhere, when the lock has not been refreshed within the interval the holder
  wrote into it (a lost machine, a frozen process); it is taken over with a warning.

Comparing refresh times across hosts assumes their clocks agree to well within the
interval (NTP does; the default interval is minutes).

How the file is created without two runs both winning:

- Local directories: the record is written to a private temporary file and
  hard-linked to `writer.lock`; link(2) fails when the name exists, so exactly one
  creator wins, and a reader never sees a half-written lock. (This also holds on
  NFS, where O_EXCL historically did not.) A dead lock is first renamed away: a
  rename succeeds for one contender only.
- gs:// and other tf.io.gfile filesystems: there is no exclusive create
  (tf.io.gfile has no O_EXCL, and GCS's generation preconditions are not reachable
  through it), so a run writes its record, waits `settle_seconds`, and reads the
  file back: only the run whose token it reads holds the lock. Two runs writing
  at the same time both read the last writer's record (GCS reads are strongly
  consistent after a write), so the earlier writer sees that it lost. The holder
  rereads the file before each refresh, so a run whose lock was taken over
  (frozen past the interval) learns it at its next refresh and calls `on_lost`.
  (A refresh landing within moments of a takeover can still overwrite it; that
  needs a run frozen for the whole interval that wakes at that moment.)
"""
import contextlib
import dataclasses
import json
import os
import socket
import sys
import threading
import time
import uuid

import tensorflow as tf

import cli

LOCK_FILE = "writer.lock"
DEFAULT_STALE_SECONDS = 300.0  # a lost machine blocks the directory this long; 5 refreshes fit in it
REFRESHES_PER_INTERVAL = 5  # several missed refreshes (a slow write, a pause) before another run may take over
REMOTE_SETTLE_SECONDS = 2.0  # wait between writing a remote lock and reading it back (see the module docstring)
_ATTEMPTS = 5  # create/take-over rounds before giving up when other runs keep changing the lock


class LockBusy(Exception):
    """Another live run holds the lock; the message is one line naming it."""


@dataclasses.dataclass(frozen=True)
class Holder:
    """What a lock file says about the run holding it."""

    host: str
    pid: int
    started: float  # UNIX time the lock was taken
    refreshed: float  # UNIX time of the last refresh
    stale_seconds: float  # the holder refreshes within this interval
    token: str  # random: tells this run's lock from another run's of the same host and pid
    process_start: str = ""  # the holder's start time in /proc (Linux), to detect a reused process id

    def describe(self):
        if self.pid < 0:  # no record could be read
            return self.token
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.started))
        return "host %s, process %d, started %s" % (self.host, self.pid, when)


def _process_start(pid):
    """Field 22 of /proc/<pid>/stat (start time since boot), '' where unknown; 'zombie' for a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except OSError:
        return ""
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return "zombie" if fields[0] == "Z" else fields[19]


def _process_gone(holder):
    """True when the holder's process no longer runs on this host."""
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: it exists
        pass
    now_start = _process_start(holder.pid)
    if now_start == "zombie":
        return True
    return bool(holder.process_start and now_start and now_start != holder.process_start)


def dead_reason(holder, now, host=None):
    """Why the lock of `holder` may be taken over, or None while it is live.

    Args:
      holder: the Holder read from the lock file.
      now: the current UNIX time.
      host: this host's name (default socket.gethostname()).
    """
    host = host or socket.gethostname()
    # (Also when the id is this process's own: a container restarted under the same host
    # name and pid 1 has another start time, while a second run inside this process has not.)
    if holder.host == host and _process_gone(holder):
        return "its process %d on this host is gone" % holder.pid
    age = now - holder.refreshed
    if age > holder.stale_seconds:
        return "it was not refreshed for %.0f s, more than its interval of %g s" % (age, holder.stale_seconds)
    return None


def _is_local(path):
    return "://" not in path


class DirectoryLock:
    """The lock file of one directory (see the module docstring for the two ways it is created)."""

    def __init__(self, directory, stale_seconds, settle_seconds=None, exclusive=None, log=print):
        self.path = os.path.join(directory, LOCK_FILE)
        self.directory = directory
        self.exclusive = _is_local(directory) if exclusive is None else exclusive
        self.settle_seconds = (0.0 if self.exclusive else REMOTE_SETTLE_SECONDS) if settle_seconds is None else settle_seconds
        self.log = log
        now = time.time()
        self.record = Holder(
            host=socket.gethostname(), pid=os.getpid(), started=now, refreshed=now, stale_seconds=float(stale_seconds),
            token=uuid.uuid4().hex, process_start=_process_start(os.getpid()),
        )

    # ------------------------------------------------------------ the file

    def read(self):
        """The Holder in the lock file; None when there is none; a dead Holder when it cannot be parsed."""
        try:
            with tf.io.gfile.GFile(self.path, "r") as f:
                text = f.read()
        except tf.errors.NotFoundError:
            return None
        try:
            return Holder(**json.loads(text))
        except (ValueError, TypeError):
            # A remote write cut short, or not our file: nobody can refresh it.
            return Holder("unknown", -1, 0.0, 0.0, 0.0, "a lock file that cannot be read")

    def _text(self):
        return json.dumps(dataclasses.asdict(self.record), indent=2, sort_keys=True) + "\n"

    def _write_local(self, target, replace):
        """Writes the record to a private file, then links (or, when `replace`, renames) it to `target`."""
        private = "%s.%s.tmp" % (self.path, self.record.token)
        with open(private, "w") as f:
            f.write(self._text())
        try:
            if replace:
                os.replace(private, target)
            else:
                os.link(private, target)  # FileExistsError when another run created it first
        finally:
            if os.path.exists(private):
                os.remove(private)

    def _write_claim(self):
        """Writes this run's record (remote: whatever is there is overwritten)."""
        if self.exclusive:
            self._write_local(self.path, replace=False)
            return
        if self.path.startswith("ram://") and tf.io.gfile.exists(self.path):
            # TensorFlow's in-memory filesystem appends on "w" (gs:// replaces the object
            # when the write closes); the read-back below settles the moment without a file.
            tf.io.gfile.remove(self.path)
        with tf.io.gfile.GFile(self.path, "w") as f:
            f.write(self._text())

    def _confirm(self):
        """After `settle_seconds`, the file must hold this run's token; LockBusy naming the winner otherwise."""
        if self.settle_seconds:
            time.sleep(self.settle_seconds)
        found = self.read()
        if found is None or found.token != self.record.token:
            raise self._busy(found, "it took the lock at the same time")
        return True

    def _remove_dead(self, dead):
        """Removes the dead holder's file; False when the file changed meanwhile (another run acted first)."""
        if not self.exclusive:
            return True  # overwritten by _write_claim; the read-back decides
        grave = "%s.%s.dead" % (self.path, self.record.token)
        try:
            os.rename(self.path, grave)  # one contender gets the file; the others FileNotFoundError
        except FileNotFoundError:
            return False
        moved = self.read_path(grave)
        if moved is not None and moved.token != dead.token:
            # Another run replaced the dead lock between our read and our rename: put its lock back.
            try:
                os.link(grave, self.path)
            except FileExistsError:
                pass
            os.remove(grave)
            return False
        os.remove(grave)
        return True

    @staticmethod
    def read_path(path):
        try:
            with open(path) as f:
                return Holder(**json.loads(f.read()))
        except (OSError, ValueError, TypeError):
            return None

    def _busy(self, holder, why=""):
        if holder is None:
            return LockBusy("%s is in use by another run that took the lock at the same time" % self.directory)
        age = time.time() - holder.refreshed
        return LockBusy(
            "%s is in use by another run (%s; its lock %s was refreshed %.0f s ago%s). Wait for it to end or use "
            "another --model_dir; a lock not refreshed for %g s is taken over, and one whose process on this "
            "host is gone is freed at once."
            % (self.directory, holder.describe(), self.path, max(age, 0.0), "; " + why if why else "", holder.stale_seconds)
        )

    # ------------------------------------------------------------ the lock

    def acquire(self):
        """Takes the lock, or raises LockBusy naming the live holder."""
        tf.io.gfile.makedirs(self.directory)
        for _ in range(_ATTEMPTS):
            holder = self.read()
            if holder is not None:
                reason = dead_reason(holder, time.time())
                if reason is None:
                    raise self._busy(holder)
                if not self._remove_dead(holder):
                    continue
                self.log(
                    "warning: taking over the writer lock %s of %s: %s. If that run still writes here, stop it."
                    % (self.path, holder.describe(), reason)
                )
            try:
                self._write_claim()
            except FileExistsError:
                continue
            return self._confirm()
        raise self._busy(self.read(), "the lock kept changing hands")

    def refresh(self):
        """Rewrites the refresh time; None while this run holds the lock, else who took it (one phrase)."""
        found = self.read()
        if found is None:
            return "another run (which has since removed it)"
        if found.token != self.record.token:
            return "another run (%s)" % found.describe()
        self.record = dataclasses.replace(self.record, refreshed=time.time())
        if self.exclusive:
            self._write_local(self.path, replace=True)
        else:
            self._write_claim()
        return None

    def release(self):
        """Removes the lock file if it is still this run's."""
        found = self.read()
        if found is not None and found.token == self.record.token:
            tf.io.gfile.remove(self.path)


class RunLock:
    """The writer locks of a run's directories, refreshed by a thread until released.

    Args:
      directories: the directories to lock, in order (duplicates ignored).
      stale_seconds: the interval this run promises to refresh within.
      log: print-like function for the takeover warning.
      on_lost: called with (directory, who took it) when another run took a
        lock over (this run was frozen past the interval); it should stop the run.
    """

    def __init__(self, directories, stale_seconds=DEFAULT_STALE_SECONDS, log=print, on_lost=None, **lock_options):
        unique = list(dict.fromkeys(d.rstrip("/") for d in directories))
        self.locks = [DirectoryLock(d, stale_seconds, log=log, **lock_options) for d in unique]
        self.period = stale_seconds / REFRESHES_PER_INTERVAL
        self.log, self.on_lost = log, on_lost
        self._stop = threading.Event()
        self._thread = None
        self._held = []

    def acquire(self):
        try:
            for lock in self.locks:
                lock.acquire()
                self._held.append(lock)
        except BaseException:
            self.release()
            raise
        self._thread = threading.Thread(target=self._refresh_loop, name="writer-lock-refresh", daemon=True)
        self._thread.start()
        return self

    def _refresh_loop(self):
        while not self._stop.wait(self.period):
            for lock in self._held:
                try:
                    taker = lock.refresh()
                except (OSError, tf.errors.OpError) as err:  # a transient storage error: the next refresh retries
                    self.log("warning: could not refresh the writer lock %s: %s" % (lock.path, err))
                    continue
                if taker is not None and self.on_lost is not None:
                    self.on_lost(lock.directory, taker)
                    return

    def release(self):
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        for lock in reversed(self._held):
            try:
                lock.release()
            except (OSError, tf.errors.OpError) as err:
                self.log("warning: could not remove the writer lock %s: %s" % (lock.path, err))
        self._held = []

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


@contextlib.contextmanager
def writer_lock(config, log=print):
    """A training run's lock on config.model_dir (and on its checkpoint directory when that lies elsewhere).

    Raises:
      cli.UsageError: another live run holds one of them (the message names it).
    """
    directories = [config.model_dir]
    checkpoint_dir = config.resolved_checkpoint_dir
    if not checkpoint_dir.rstrip("/").startswith(config.model_dir.rstrip("/") + "/"):
        directories.append(checkpoint_dir)
    lock = RunLock(directories, config.lock_stale_seconds, log=log, on_lost=_stop_writing)
    try:
        lock.acquire()
    except LockBusy as err:
        raise cli.UsageError(str(err)) from None
    try:
        yield lock
    finally:
        lock.release()


def _stop_writing(directory, who):
    """Another run took this run's lock over (this one was frozen past its interval): stop at once."""
    print(
        "python -m trainer.task: error: %s took over the writer lock of %s, which this run had not refreshed "
        "within its interval; stopping now so that only one run writes there." % (who, directory),
        file=sys.stderr, flush=True,
    )
    os._exit(cli.EXIT_USAGE)  # from the refresh thread, while the main thread may be inside a step
