"""The run manifest: what makes a run complete (options, inputs, outputs), how a rebuild is published
(staging, old manifest out first, new manifest last), append-resumable files, umask, and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from taosr1_verl.errors import UserError
from taosr1_verl.files import atomic_dir, atomic_write_text
from taosr1_verl.run_manifest import (
    MANIFEST,
    OutputDir,
    RunSpec,
    mark_complete,
    mark_partial,
    open_resumable,
    progress_path,
    verify,
)


def _build(out: Path, spec: RunSpec, files: dict[str, str], owned=()) -> dict:
    with OutputDir(out, spec, owned=owned) as od:
        for name, text in files.items():
            od.path(name).write_text(text)
        return od.commit({"rows": len(files)})


def test_complete_only_while_options_inputs_and_outputs_match(tmp_path):
    src = tmp_path / "in.tsv"
    src.write_text("a\n")
    out = tmp_path / "out"
    spec = RunSpec("cmd", {"seed": 0, "nested": {"t": 1.0}}, {"input": src, "none": None})
    m = _build(out, spec, {"x.txt": "x", "y.txt": "y"})
    assert m["complete"] and m["rows"] == 2 and set(m["outputs"]) == {"x.txt", "y.txt"}
    assert verify(out, RunSpec("cmd", {"seed": 0, "nested": {"t": 1.0}}, {"input": src})).complete
    assert verify(out, RunSpec("cmd", {"seed": 1, "nested": {"t": 1.0}}, {"input": src})).reason == \
        "other options (seed 0 -> 1)"
    assert verify(out, RunSpec("cmd", {"seed": 0, "nested": {"t": 0.7}}, {"input": src})).reason == \
        "other options (nested.t 1.0 -> 0.7)"
    assert "written by 'cmd'" in verify(out, RunSpec("other", spec.options, {"input": src})).reason
    with open(src, "a") as f:
        f.write("b\n")  # rows appended to the input
    assert verify(out, RunSpec("cmd", spec.options, {"input": src})).reason == \
        f"input input ({src}) changed (size 2 -> 4 bytes)"
    src.write_text("a\n")
    assert verify(out, RunSpec("cmd", spec.options, {"input": src})).complete  # same content: mtime ignored
    (out / "y.txt").write_text("z")
    assert verify(out, spec).reason == "output y.txt changed (content)"
    (out / "y.txt").unlink()
    assert verify(out, spec).reason == "output y.txt is missing"
    (out / MANIFEST).write_text(json.dumps({"options": spec.options, "files": {}}))  # an older layout
    assert "older version" in verify(out, spec).reason


def test_a_directory_input_is_fingerprinted_file_by_file(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / ".cache").mkdir()
    (model / ".cache" / "lock").write_text("ignored")
    out = tmp_path / "out"
    _build(out, RunSpec("cmd", {}, {"model": model}), {"a": "1"})
    (model / ".cache" / "lock").write_text("hidden files do not count")
    assert verify(out, RunSpec("cmd", {}, {"model": model})).complete
    (model / "weights.bin").write_bytes(b"\0")
    assert verify(out, RunSpec("cmd", {}, {"model": model})).reason == "input model: weights.bin was added"
    other = tmp_path / "other"
    other.mkdir()
    assert verify(out, RunSpec("cmd", {}, {"model": other})).reason == f"input model: {model} -> {other}"


def test_a_rebuild_replaces_every_old_output_and_leaves_other_files_alone(tmp_path):
    out = tmp_path / "out"
    _build(out, RunSpec("cmd", {"splits": 3}), {"pairs_a.parquet": "a", "pairs_b.parquet": "b", "c.txt": "c"},
           owned=("pairs_*.parquet",))
    (out / "pairs_stray.parquet").write_text("left by a run that crashed")
    (out / "notes.md").write_text("the user's")
    _build(out, RunSpec("cmd", {"splits": 1}), {"pairs_a.parquet": "A"}, owned=("pairs_*.parquet",))
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "notes.md", "pairs_a.parquet"]
    assert (out / "pairs_a.parquet").read_text() == "A"


def test_output_names_and_directories_are_checked(tmp_path):
    with OutputDir(tmp_path / "o", RunSpec("cmd")) as od:
        for bad in ("../x", "a/b", ".hidden", "", "x/../../y"):
            with pytest.raises(UserError, match="plain file name"):
                od.path(bad)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="exists and is not a directory"), OutputDir(tmp_path / "file", RunSpec("c")):
        pass
    with pytest.raises(UserError, match="a parent is a file"), OutputDir(tmp_path / "file" / "sub", RunSpec("c")):
        pass


def test_a_failed_build_keeps_the_old_run_and_leaves_no_staging(tmp_path):
    out = tmp_path / "out"
    spec = RunSpec("cmd", {"v": 1})
    _build(out, spec, {"a.txt": "old"})
    with pytest.raises(KeyboardInterrupt), OutputDir(out, RunSpec("cmd", {"v": 2})) as od:
        od.path("a.txt").write_text("new")
        raise KeyboardInterrupt
    assert verify(out, spec).complete and (out / "a.txt").read_text() == "old"
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", MANIFEST]


def test_staging_left_by_a_killed_run_is_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".staging-{int(dead.stdout)}"
    stale.mkdir()
    (stale / "half.parquet").write_text("x")
    _build(out, RunSpec("cmd"), {"a.txt": "a"})
    assert not stale.exists()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "t.txt", "x")
        m = _build(tmp_path / "out", RunSpec("cmd"), {"a.txt": "a"})
    finally:
        os.umask(old)
    assert m["complete"]
    for p in (tmp_path / "t.txt", tmp_path / "out" / MANIFEST, tmp_path / "out" / "a.txt"):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_tracker_files_and_published_directories_follow_the_umask(tmp_path, umask):
    from taosr1_verl.sampling import DifficultyTracker

    old = os.umask(umask)
    try:
        DifficultyTracker(3).save(tmp_path / "t.npz")  # was 0600 (mkstemp)
        with atomic_dir(tmp_path / "model") as d:  # was 0700 (mkdtemp)
            (d / "config.json").write_text("{}")
        with atomic_dir(tmp_path / "model") as d:  # a rebuild replaces the directory whole
            (d / "weights.bin").write_text("w")
    finally:
        os.umask(old)
    assert (tmp_path / "t.npz").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o777 & ~umask
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["weights.bin"]


def test_a_failed_directory_build_keeps_the_old_directory_and_no_temp(tmp_path):
    with atomic_dir(tmp_path / "m") as d:
        (d / "a").write_text("a")
    with pytest.raises(RuntimeError, match="broke"), atomic_dir(tmp_path / "m") as d:
        (d / "b").write_text("b")
        raise RuntimeError("broke")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["a"]


def test_append_resumable_file_continues_only_under_its_spec(tmp_path):
    path = tmp_path / "samples.jsonl"
    spec = RunSpec("samples", {"temperature": 1.0}, {})
    assert open_resumable(path, spec) == "fresh"
    mark_partial(path, spec)
    path.write_text('{"i": 1}\n')
    assert open_resumable(path, spec) == "partial"
    with pytest.raises(UserError, match=r"made with other options: \(temperature 1.0 -> 0.7\); pass --no-resume"):
        open_resumable(path, RunSpec("samples", {"temperature": 0.7}, {}))
    mark_complete(path, spec, {"rows": 1})
    assert open_resumable(path, spec) == "complete"
    with open(path, "a") as f:
        f.write('{"i": 2}\n')
    with pytest.raises(UserError, match="the file changed .* after it was finished"):
        open_resumable(path, spec)
    progress_path(path).unlink()
    with pytest.raises(UserError, match="exists without samples.jsonl.manifest.json"):
        open_resumable(path, spec)
    assert open_resumable(path, spec, resume=False) == "fresh" and not path.exists()


_SIGTERM_SCRIPT = textwrap.dedent("""
    import argparse, os, signal, sys
    from taosr1_verl.cli import run_handler
    from taosr1_verl.run_manifest import OutputDir, RunSpec

    def run(args):
        with OutputDir(args.out, RunSpec("cmd")) as od:
            od.path("half.txt").write_text("x")
            os.kill(os.getpid(), signal.SIGTERM)
            od.commit()
        return 0

    # As the CLI runs a resumable subcommand's handler.
    sys.exit(run_handler(argparse.Namespace(func=run, out=sys.argv[1], command="demo-cmd", resumable=True,
                                            verbose=False, command_prog="taosr1 demo-cmd")))
""")


def test_sigterm_cleans_up_and_ends_with_one_line(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_SCRIPT, str(out)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert proc.stderr.strip().splitlines() == [
        "taosr1 demo-cmd: terminated; temporary files removed, a rerun continues from the last finished step"]
    assert list(out.iterdir()) == []
