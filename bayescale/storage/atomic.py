"""Atomic file writes: the final path holds the old content or the complete new one, never a part.

The bytes go to a temporary file in the target's folder, named
``.<name>.<pid>-<random>.tmp`` and created with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` (:func:`tempfile.mkstemp`): a symlink or a directory planted at
any name cannot be written through or trip the write.  The file is flushed to
disk and renamed over the target (``os.replace``, which replaces a symlink
at the target itself rather than its destination).  A process killed between
creating the temporary file and renaming it leaves it behind; every write
first removes such files in its folder whose process is no longer running.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

__all__ = ["check_writable", "stale_temporaries", "write_atomically"]

_TEMP = re.compile(r"^\..+\.(\d+)-[A-Za-z0-9_]+\.tmp$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):      # exists, owned by someone else
        return True
    return True


def stale_temporaries(folder: Path) -> list[Path]:
    """Temporary files of this module in ``folder`` whose writing process has died (regular files only)."""
    out = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return out
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and entry.is_file(follow_symlinks=False) and not _alive(int(m.group(1))):
            out.append(Path(entry.path))
    return out


def check_writable(path) -> str | None:
    """Why a file cannot be created next to ``path`` (``None`` if it can): a probe file of this
    module's temporary kind is created in the folder and removed (permission bits alone do not tell:
    a read-only mount refuses root too)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass
    return None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); raises ``OSError`` on failure,
    leaving no temporary file."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    for stale in stale_temporaries(folder):
        try:
            stale.unlink()
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())        # as an ordinary new file would be, not mkstemp's 0600
        with os.fdopen(fd, "wb") as fh:
            fd = None
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                        # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path
