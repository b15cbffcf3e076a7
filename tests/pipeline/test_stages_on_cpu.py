"""Resumable stages: skip completed ones, lose only the stage in flight, rerun from a stage."""

from __future__ import annotations

import pytest

from taosr1_verl.pipeline.stages import RECORD, Pipeline, Stage, read_record, read_settings


def _stages(calls: list[str], fail_at: str | None = None, uses: dict[str, tuple[str, ...]] | None = None):
    def make(name):
        def run(ctx, out):
            calls.append(name)
            if name == fail_at:
                (out / "half.txt").write_text("partial")
                raise KeyboardInterrupt
            prev = {k: v["value"] for k, v in ctx.summaries.items()}
            (out / "value.txt").write_text(str(len(prev)))
            return {"value": len(prev)}
        return Stage(name, run, settings=(uses or {}).get(name))
    return [make(n) for n in ("a", "b", "c")]


def test_runs_in_order_and_skips_completed(tmp_path):
    calls: list[str] = []
    summaries = Pipeline(_stages(calls), tmp_path, {"p": 1}).run()
    assert calls == ["a", "b", "c"] and summaries["c"]["value"] == 2
    assert all((tmp_path / n / RECORD).exists() for n in "abc")
    calls.clear()
    again = Pipeline(_stages(calls), tmp_path, {"p": 1}).run()
    assert calls == [] and again["c"]["value"] == 2


def test_interrupt_keeps_finished_stages_and_no_partial_output(tmp_path):
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        Pipeline(_stages(calls, fail_at="b"), tmp_path, {}).run()
    assert (tmp_path / "a" / RECORD).exists()
    assert not (tmp_path / "b").exists()  # the stage in flight never appears half-written
    calls.clear()
    Pipeline(_stages(calls), tmp_path, {}).run()
    assert calls == ["b", "c"]


def test_rerun_from_and_changed_settings(tmp_path):
    calls: list[str] = []
    Pipeline(_stages(calls), tmp_path, {"p": 1}).run()
    calls.clear()
    Pipeline(_stages(calls), tmp_path, {"p": 1}).run(rerun_from="b")
    assert calls == ["b", "c"]
    calls.clear()
    Pipeline(_stages(calls), tmp_path, {"p": 2}).run()
    assert calls == ["a", "b", "c"]  # other settings: nothing stale is reused
    with pytest.raises(ValueError, match="unknown stage"):
        Pipeline(_stages(calls), tmp_path, {}).run(rerun_from="zzz")


def test_until_stops_early(tmp_path):
    calls: list[str] = []
    Pipeline(_stages(calls), tmp_path, {}).run(until="a")
    assert calls == ["a"]


def test_a_late_setting_reruns_only_the_stages_that_read_it_and_their_successors(tmp_path):
    calls: list[str] = []
    uses = {"a": ("p",), "b": ("p", "late"), "c": ("p",)}
    Pipeline(_stages(calls, uses=uses), tmp_path, {"p": 1, "late": "x"}).run()
    calls.clear()
    Pipeline(_stages(calls, uses=uses), tmp_path, {"p": 1, "late": "y"}).run()
    assert calls == ["b", "c"]  # c does not read "late" but reads b's output
    calls.clear()
    Pipeline(_stages(calls, uses=uses), tmp_path, {"p": 1, "late": "y"}).run()
    assert calls == []
    # an interrupted rerun leaves c's old record (for late=y); after switching back, c must still rerun
    with pytest.raises(KeyboardInterrupt):
        Pipeline(_stages(calls, fail_at="c", uses=uses), tmp_path, {"p": 1, "late": "x"}).run()
    calls.clear()
    Pipeline(_stages(calls, uses=uses), tmp_path, {"p": 1, "late": "x"}).run()
    assert calls == ["c"]
    calls.clear()
    Pipeline(_stages(calls, uses=uses), tmp_path, {"p": 2, "late": "x"}).run()
    assert calls == ["a", "b", "c"]


def test_read_settings_gives_what_each_stage_ran_with(tmp_path):
    uses = {"a": ("p",), "b": ("p", "late"), "c": None}
    Pipeline(_stages([], uses=uses), tmp_path, {"p": 1, "late": "x", "other": 3}).run()
    assert read_settings(tmp_path / "a") == {"p": 1}
    assert read_settings(tmp_path / "b") == {"p": 1, "late": "x"}
    assert read_settings(tmp_path / "c") == {"p": 1, "late": "x", "other": 3}  # None: every setting
    with pytest.raises(RuntimeError, match="no completed stage"):
        read_settings(tmp_path / "missing")


def test_records_hold_the_peak_memory_of_the_stage_process_tree(tmp_path):
    import subprocess
    import sys

    child_mib = 300

    def allocate_in_a_child(ctx, out):
        # b"\1" * n writes every page (a zeroed bytearray would stay virtual); the child must count
        subprocess.run([sys.executable, "-c", f"import time; b = b'\\1' * ({child_mib} << 20); time.sleep(1.5)"],
                       check=True)
        return {}

    def idle(ctx, out):
        return {}

    summaries = Pipeline([Stage("alloc", allocate_in_a_child), Stage("idle", idle)], tmp_path, {}).run()
    alloc, idle_peak = summaries["alloc"]["peak_memory_gib"], summaries["idle"]["peak_memory_gib"]
    assert alloc * 1024 >= idle_peak * 1024 + 0.9 * child_mib
    assert read_record(tmp_path / "alloc")["summary"]["peak_memory_gib"] == alloc


# ---- a stage is complete only while its files and the earlier stages' files are the ones it recorded ------

def _file_stages(calls: list[str], tag: dict[str, str]):
    """Stages that write files from the previous stage's file and a tag (what an upstream rerun changes)."""
    def make(name, prev):
        def run(ctx, out):
            calls.append(name)
            before = (ctx.stage_dir(prev) / "out.txt").read_text() if prev else ""
            (out / "out.txt").write_text(f"{before}{name}:{tag.get(name, '')};")
            (out / "sub").mkdir()
            (out / "sub" / "more.bin").write_bytes(name.encode() * 3)
            return {}
        return Stage(name, run)
    return [make("a", None), make("b", "a"), make("c", "b")]


def test_a_deleted_or_edited_output_makes_its_stage_run_again(tmp_path):
    calls: list[str] = []
    Pipeline(_file_stages(calls, {}), tmp_path, {}).run()
    (tmp_path / "b" / "sub" / "more.bin").unlink()
    calls.clear()
    Pipeline(_file_stages(calls, {}), tmp_path, {}).run()
    assert calls == ["b", "c"]
    (tmp_path / "c" / "out.txt").write_text("edited")
    calls.clear()
    Pipeline(_file_stages(calls, {}), tmp_path, {}).run()
    assert calls == ["c"] and (tmp_path / "c" / "out.txt").read_text() == "a:;b:;c:;"


def test_an_earlier_stage_rerun_alone_makes_the_later_ones_run_again(tmp_path):
    calls: list[str] = []
    Pipeline(_file_stages(calls, {}), tmp_path, {}).run()
    calls.clear()
    Pipeline(_file_stages(calls, {"a": "v2"}), tmp_path, {}).run(rerun_from="a", until="a")  # a's files change
    assert calls == ["a"]
    calls.clear()
    Pipeline(_file_stages(calls, {"a": "v2"}), tmp_path, {}).run()
    assert calls == ["b", "c"] and (tmp_path / "c" / "out.txt").read_text() == "a:v2;b:;c:;"


def test_a_pipeline_killed_at_any_file_step_reruns_what_is_not_complete(tmp_path):
    import multiprocessing
    import os
    import signal

    def run(run_dir, tag, kill_at=None):
        def child():
            if kill_at:
                os.environ["TAOSR1_KILL_AT_FILE_STEP"] = str(kill_at)
            Pipeline(_file_stages([], tag), run_dir, {}).run()
            os._exit(0)
        proc = multiprocessing.get_context("fork").Process(target=child)
        proc.start()
        proc.join(60)
        return proc.exitcode

    def final(run_dir):
        return (run_dir / "c" / "out.txt").read_text()

    step, code = 0, None
    while code != 0:
        step += 1
        d = tmp_path / f"k{step}"
        assert run(d, {}) == 0
        # a rebuild from stage a with another output, killed at its step-th file step
        Pipeline(_file_stages([], {"a": "v2"}), d, {}).invalidate_from("a")
        code = run(d, {"a": "v2"}, kill_at=step)
        assert code in (0, -signal.SIGKILL)
        Pipeline(_file_stages([], {"a": "v2"}), d, {}).run()
        assert final(d) == "a:v2;b:;c:;", f"step {step}"
        assert not [p for p in d.iterdir() if p.name.startswith(".")]
    assert step >= 6
