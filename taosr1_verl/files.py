"""Atomic file output and JSONL input, shared by every stage.

Every output of a long-running stage is written to a temp file in the same directory and renamed into
place, so a reader (or a resumed run) sees either the old file or the complete new one, never half of it.
Temp files are created like any other output (mode 0666 less the user's umask), so a renamed file is as
readable as one written directly. Renames and removals that publish outputs go through :func:`replace`
and :func:`remove`, which count them: with ``TAOSR1_KILL_AT_FILE_STEP=k`` in the environment the process
kills itself (SIGKILL, no cleanup) right after the k-th, which is how the tests interrupt a run at every
file boundary.
"""

from __future__ import annotations

import codecs
import json
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

KILL_ENV = "TAOSR1_KILL_AT_FILE_STEP"
_steps = 0


def _file_step() -> None:
    global _steps
    limit = os.environ.get(KILL_ENV)
    if limit:
        _steps += 1
        if _steps >= int(limit):
            os.kill(os.getpid(), signal.SIGKILL)


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``os.replace``, counted as one file step (see the module docstring)."""
    os.replace(src, dst)
    _file_step()


def remove(path: str | os.PathLike[str]) -> None:
    """Remove a file if it exists, counted as one file step when it did."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    _file_step()


def temp_path(path: str | os.PathLike[str]) -> Path:
    """A new, empty, hidden file beside ``path`` (same suffix, so writers that look at it still see the
    format), created with the user's umask (``mkstemp`` would make it 0600)."""
    path = Path(path)
    while True:
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{os.urandom(3).hex()}{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on error it is removed.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Put the finished directory ``src`` in place of ``dst``: what ``dst`` held is removed first (a directory
    cannot be renamed over a non-empty one), then ``src`` is renamed (one counted file step). A reader sees the
    old directory, no directory, or the complete new one, never a half-written one."""
    dst = Path(dst)
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    else:
        dst.unlink(missing_ok=True)
    replace(src, dst)


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new, empty, hidden directory beside ``path`` to build a directory output in (a model, a merged
    checkpoint); on success it is published as ``path`` (:func:`publish_dir`), on error it is removed. The
    directory is created with the user's umask (``mkdtemp`` would make it 0700).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "model"
        >>> with atomic_dir(target) as tmp:
        ...     _ = (tmp / "config.json").write_text("{}")
        >>> sorted(p.name for p in target.iterdir())
        ['config.json']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(3).hex()}")
        try:
            tmp.mkdir(mode=0o777)
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        publish_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, default: Any = str) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (``default`` converts other types)."""
    atomic_write_text(path, json.dumps(obj, indent=1, default=default, ensure_ascii=False))


def drop_torn_tail(path: str | os.PathLike[str]) -> None:
    """Cut a half-written last line (a run killed while appending) off a line-oriented file, so the next append
    starts on a fresh line. A missing or empty file, or one ending in a newline, is left as it is."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSONL file (a UTF-8 BOM is allowed).

    Raises ``ValueError`` naming the file and line for text that is not UTF-8, broken JSON or a line that is
    not an object.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid UTF-8 (byte {e.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, row
