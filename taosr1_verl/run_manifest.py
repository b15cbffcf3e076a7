"""When is a run complete? One answer for every resumable command (``data synth/prepare``, ``data teach``,
``passn``, ``pairs``, ``autofas search``) and the demo's stages.

A run is complete only when its manifest, written LAST and atomically, records

* the command and its options (everything that changes the outputs),
* a fingerprint of every input: size + SHA-256 for files up to :data:`CONTENT_HASH_MAX`, size + mtime for
  larger ones (model weights), file by file for a directory,
* every output file: size + SHA-256.

:func:`verify` checks all three against the current request and the files on disk, and says why a run is
not complete. A (re)build goes through :class:`OutputDir`: outputs are written into a staging directory
inside the output directory, and :meth:`OutputDir.commit` removes the old manifest first, then the old
outputs, moves the new ones in and writes the new manifest last. Killed at any point, the directory holds
either the old complete run or no manifest (the next run rebuilds), never a manifest over a mix.

Files that grow across interrupted runs (pass@N samples, teacher answers) carry a progress manifest
``<file>.manifest.json`` with the spec they are made under (:func:`open_resumable`): a rerun continues
them only under the same spec and refuses otherwise.

:func:`sigterm_as_interrupt` turns SIGTERM into ``KeyboardInterrupt``, so that the same cleanup runs for both
(staging directories, temp files); the CLI runs every command inside it and ends an interrupted one with
one line instead of a traceback (:func:`taosr1_verl.cli.run_handler`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taosr1_verl.errors import UserError
from taosr1_verl.files import atomic_write_json, remove, replace

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1
"""Manifest layout version; a manifest without it (or another one) is never taken as complete."""
CONTENT_HASH_MAX = 64 << 20
"""Inputs up to this size are fingerprinted by content, larger ones by size and modification time."""
STAGING_PREFIX = ".staging-"
_HEADER = ("format", "command", "complete", "options", "inputs", "outputs", "finished")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _input_file(p: Path) -> dict[str, Any]:
    st = p.stat()
    fp: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if st.st_size <= CONTENT_HASH_MAX:
        fp["sha256"] = sha256_file(p)
    return fp


def fingerprint_input(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Fingerprint of an input file, or of every (non-hidden) file under an input directory."""
    p = Path(path)
    if p.is_dir():
        files = {}
        for f in sorted(p.rglob("*")):
            rel = f.relative_to(p)
            if f.is_file() and not any(part.startswith(".") for part in rel.parts):
                files[rel.as_posix()] = _input_file(f)
        return {"path": str(p), "files": files}
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    return {"path": str(p), **_input_file(p)}


def fingerprint_output(path: str | os.PathLike[str]) -> dict[str, Any]:
    return {"size": Path(path).stat().st_size, "sha256": sha256_file(path)}


def canonical(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, other types their ``str``)."""
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


@dataclass
class RunSpec:
    """What a run is made of: the command, its options and its inputs."""

    command: str
    options: Mapping[str, Any] = field(default_factory=dict)
    """Everything that changes the outputs (JSON-able; other types are compared by their ``str``)."""
    inputs: Mapping[str, str | os.PathLike[str] | Mapping[str, Any] | None] = field(default_factory=dict)
    """Input files or directories by role (``None`` entries are skipped); a mapping is a fingerprint made
    by the caller (e.g. a content hash of an in-memory table). They are fingerprinted when the spec is
    made, before the run reads them: an input that changes during the run makes the next run rebuild."""
    _fingerprints: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.options = canonical(dict(self.options))
        self._fingerprints = {k: canonical(v) if isinstance(v, Mapping) else fingerprint_input(v)
                              for k, v in sorted(self.inputs.items()) if v is not None}

    def fingerprints(self) -> dict[str, Any]:
        return self._fingerprints

    def header(self) -> dict[str, Any]:
        return {"format": FORMAT, "command": self.command, "options": self.options, "inputs": self.fingerprints()}


@dataclass
class Verdict:
    """Whether a run is complete, and if not, why (for the log or an error message)."""

    complete: bool
    reason: str
    manifest: dict[str, Any] | None = None


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A manifest, or ``None`` when there is none or it cannot be read (either way: not complete)."""
    try:
        m = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return m if isinstance(m, dict) else None


def _short(v: Any) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def _same_file(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.get("size") != b.get("size"):
        return False
    if "sha256" in a and "sha256" in b:
        return a["sha256"] == b["sha256"]
    return a.get("mtime_ns") == b.get("mtime_ns")


def _input_change(name: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str | None:
    if old is None or new is None:
        return f"input {name} was {'added' if old is None else 'removed'}"
    if "files" in old or "files" in new:
        of, nf = old.get("files", {}), new.get("files", {})
        change = None
        for rel in sorted(set(of) | set(nf)):
            if rel not in nf or rel not in of:
                change = f"input {name}: {rel} was {'removed' if rel not in nf else 'added'}"
            elif not _same_file(of[rel], nf[rel]):
                change = f"input {name}: {rel} changed"
            if change:
                break
        if change and old.get("path") != new.get("path"):
            return f"input {name}: {old.get('path')} -> {new.get('path')}"
        return change
    if "path" not in new:  # a caller-made fingerprint
        return None if canonical(old) == canonical(new) else f"input {name} changed"
    if not _same_file(old, new):
        if old.get("path") != new["path"]:
            return f"input {name}: {old.get('path')} -> {new['path']}"
        what = (f"size {old.get('size')} -> {new.get('size')} bytes" if old.get("size") != new.get("size")
                else "content" if "sha256" in new else "modification time")
        return f"input {name} ({new['path']}) changed ({what})"
    return None


def _option_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _option_diff(a, b, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k} {_short(a)} -> {_short(b)}")
    return out


def spec_change(manifest: Mapping[str, Any], spec: RunSpec) -> str | None:
    """Why ``manifest`` was not made by ``spec`` (``None``: it was)."""
    if manifest.get("format") != FORMAT:
        return "written by an older version of taosr1 (no input and output fingerprints)"
    if manifest.get("command") != spec.command:
        return f"written by {manifest.get('command')!r}, not {spec.command!r}"
    diff = _option_diff(manifest.get("options") or {}, spec.options)
    if diff:
        return "other options (" + "; ".join(diff) + ")"
    old_in, new_in = manifest.get("inputs") or {}, spec.fingerprints()
    for name in sorted(set(old_in) | set(new_in)):
        change = _input_change(name, old_in.get(name), new_in.get(name))
        if change:
            return change
    return None


def output_change(out: Path, outputs: Mapping[str, Any]) -> str | None:
    """Why the files ``outputs`` lists (relative to ``out``: size and SHA-256) differ on disk (``None``: they do not)."""
    for name, fp in sorted(outputs.items()):
        p = out / name
        if not p.is_file():
            return f"output {name} is missing"
        if p.stat().st_size != fp.get("size"):
            return f"output {name} changed (size {fp.get('size')} -> {p.stat().st_size} bytes)"
        if sha256_file(p) != fp.get("sha256"):
            return f"output {name} changed (content)"
    return None


def verify(out_dir: str | os.PathLike[str], spec: RunSpec, name: str = MANIFEST) -> Verdict:
    """Is the run in ``out_dir`` complete for ``spec``? Checks options, inputs and every output file."""
    out = Path(out_dir)
    m = read_manifest(out / name)
    if m is None:
        return Verdict(False, f"no readable {name} (never finished, or interrupted)")
    reason = spec_change(m, spec)
    if reason is None and not m.get("complete"):
        reason = "the run did not finish"
    if reason is None:
        reason = output_change(out, m.get("outputs") or {})
    return Verdict(reason is None, reason or "complete", m)


def check_name(name: str, what: str = "output name") -> str:
    """``name`` if it is a plain file name (letters, digits, ``_.+-``; no separators, no leading dot)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UserError(f"{what} {name!r}: use letters, digits, '_', '-', '+' and '.' only (a plain file name)")
    return name


def make_output_dir(out: str | os.PathLike[str]) -> Path:
    """Create ``out`` (and parents); a clear :class:`UserError` when it, or a parent, is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{out}: cannot create the directory (a parent is a file)") from None
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_stale(out: Path, prefix: str = STAGING_PREFIX) -> None:
    """Remove ``<out>/<prefix><pid>*`` left by runs that were killed (their process is gone)."""
    for d in out.glob(prefix + "*"):
        pid = d.name[len(prefix):].split("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid() or not _pid_alive(int(pid)):
            logger.info("removing %s left by an interrupted run", d)
            shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)


class OutputDir:
    """Build a run's outputs in ``<out>/.staging-<pid>/`` and commit them with the manifest last.

    ``owned`` globs name the files this command writes in ``out`` (e.g. ``"pairs_*.parquet"``): a commit
    removes the old ones even when no readable manifest lists them, so that no stale output of another
    run stays beside the new ones. Everything else in ``out`` is left alone.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> spec = RunSpec("demo", {"n": 1})
        >>> with OutputDir(out, spec) as od:
        ...     _ = od.path("a.txt").write_text("hello")
        ...     _ = od.commit({"rows": 1})
        >>> verify(out, spec).complete, verify(out, RunSpec("demo", {"n": 2})).reason
        (True, 'other options (n 1 -> 2)')
    """

    def __init__(self, out_dir: str | os.PathLike[str], spec: RunSpec, *, owned: Sequence[str] = (),
                 name: str = MANIFEST) -> None:
        self.out, self.spec, self.owned, self.name = Path(out_dir), spec, tuple(owned), name
        self.staging = self.out / f"{STAGING_PREFIX}{os.getpid()}"

    def __enter__(self) -> OutputDir:
        make_output_dir(self.out)
        clear_stale(self.out)
        self.staging.mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where to write the output ``name`` (a plain file name) during the build."""
        return self.staging / check_name(name)

    def commit(self, summary: Mapping[str, Any] | None = None, keep: Sequence[str] = ()) -> dict[str, Any]:
        """Publish the staged files (plus ``keep``: outputs already in ``out``) and write the manifest last.

        ``summary`` items go into the manifest beside the header (``options``, ``inputs``, ``outputs``...).
        """
        summary = dict(summary or {})
        clash = set(summary) & set(_HEADER)
        if clash:
            raise ValueError(f"summary keys {sorted(clash)} are reserved for the manifest header")
        staged = sorted(f.name for f in self.staging.iterdir() if f.is_file() and not f.name.startswith("."))
        outputs = {n: fingerprint_output(self.staging / n) for n in staged}
        outputs.update({check_name(n): fingerprint_output(self.out / n) for n in keep})
        mpath = self.out / self.name
        old = read_manifest(mpath) or {}
        remove(mpath)  # from here on nothing in out reads as complete
        stale = set(old.get("outputs") or {}) | set(old.get("files") or {})
        stale |= {p.name for g in self.owned for p in self.out.glob(g) if p.is_file()}
        for n in sorted(stale - set(keep) - {self.name}):
            if _NAME.fullmatch(n) and ".." not in n:
                remove(self.out / n)
        for n in staged:
            replace(self.staging / n, self.out / n)
        manifest = {**self.spec.header(), "complete": True, "outputs": outputs,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **canonical(summary)}
        atomic_write_json(mpath, manifest)
        return manifest


def discard(out_dir: str | os.PathLike[str], owned: Sequence[str] = (), name: str = MANIFEST) -> None:
    """Forget a run: its manifest first, then every output it lists and every ``owned`` file."""
    out = Path(out_dir)
    old = read_manifest(out / name) or {}
    remove(out / name)
    names = set(old.get("outputs") or {}) | {p.name for g in owned for p in out.glob(g) if p.is_file()}
    for n in sorted(names):
        if _NAME.fullmatch(n) and ".." not in n:
            remove(out / n)


# ---- files that grow across runs ----------------------------------------------------------------
def progress_path(path: str | os.PathLike[str]) -> Path:
    """The progress manifest of an append-resumable file: ``<file>.manifest.json``."""
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


def open_resumable(path: str | os.PathLike[str], spec: RunSpec, *, resume: bool = True,
                   flag: str = "--no-resume") -> str:
    """What to do with an append-resumable file: ``"fresh"`` (none yet), ``"partial"`` (continue it) or
    ``"complete"`` (finished under this spec, content unchanged).

    Raises :class:`UserError` when the file exists but was made under another spec, without a progress
    manifest, or changed after it was finished (continuing would mix two runs). ``resume=False`` deletes
    the file and its manifest first.
    """
    path = Path(path)
    mpath = progress_path(path)
    if path.exists() and path.is_dir():
        raise UserError(f"{path}: is a directory, expected a file")
    if not resume:
        remove(mpath)
        remove(path)
    if not path.exists():
        remove(mpath)
        return "fresh"
    m = read_manifest(mpath)
    advice = f"pass {flag} to start over, or choose another output"
    if m is None:
        raise UserError(f"{path} exists without {mpath.name}: it may come from other settings; {advice}")
    reason = spec_change(m, spec)
    if reason is not None:
        raise UserError(f"{path} was made with {reason.replace('other options', 'other options:')}; {advice}")
    if m.get("complete"):
        change = output_change(path.parent, m.get("outputs") or {})
        if change is not None:
            raise UserError(f"{path}: {change.replace('output ' + path.name, 'the file')} after it was finished; "
                            f"{advice}")
        return "complete"
    return "partial"


def mark_partial(path: str | os.PathLike[str], spec: RunSpec) -> None:
    """Record that ``path`` is being written under ``spec`` (call before appending to it)."""
    atomic_write_json(progress_path(path), {**spec.header(), "complete": False})


def mark_complete(path: str | os.PathLike[str], spec: RunSpec, summary: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Record that ``path`` is finished under ``spec``, with its size and hash (written last)."""
    path = Path(path)
    m = {**spec.header(), "complete": True, "outputs": {path.name: fingerprint_output(path)},
         "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **canonical(dict(summary or {}))}
    atomic_write_json(progress_path(path), m)
    return m


# ---- interruption -------------------------------------------------------------------------------
@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs (main thread only), SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C, so every
    ``finally`` / ``except BaseException`` cleanup runs for both."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
