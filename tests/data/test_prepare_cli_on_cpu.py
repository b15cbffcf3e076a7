"""`taosr1 data ...` end to end on small files: synth, prepare (generic, WANDS layout, --on-error skip),
sft from a teacher file, stats; resumability and the row accounting of the drop report."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from taosr1_verl.cli import main
from taosr1_verl.data.builders import iter_pairs_parquet
from taosr1_verl.data.split import normalize_query
from taosr1_verl.data.synth import rule_teacher


def _queries(path):
    return {normalize_query(p.query) for p in iter_pairs_parquet(path)}


def test_synth_builds_every_file_without_leakage(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "synth", "--out", str(out), "--n", "3000", "--compact", "--no-progress", "--seed", "3"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert sum(m["pairs_per_split"].values()) == 3000
    rl = m["files"]["rl_train.parquet"]
    assert rl["cv_out"] == 0.0 and rl["cv_in"] > 0.5 and rl["stats"]["class_cv"] == 0.0
    assert m["files"]["sft_train.parquet"]["dropped"] == {}
    assert "sft_test.parquet" not in m["files"]
    tr, va, te = (_queries(out / f"pairs_{s}.parquet") for s in ("train", "val", "test"))
    assert not (tr & te) and not (tr & va) and not (va & te)
    rows = pq.read_table(out / "rl_train.parquet").to_pylist()
    assert all(r["extra_info"]["teacher_response"].startswith(r["reward_model"]["ground_truth"] + "\n") for r in rows)
    # Resume: same options -> nothing rebuilt.
    mtime = (out / "rl_train.parquet").stat().st_mtime_ns
    assert main(["data", "synth", "--out", str(out), "--n", "3000", "--compact", "--no-progress", "--seed", "3"]) == 0
    assert (out / "rl_train.parquet").stat().st_mtime_ns == mtime
    capsys.readouterr()
    assert main(["data", "stats", str(out / "eval_test.parquet"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["rows"] == m["pairs_per_split"]["test"] and s["layout"] == "rl"


def test_synth_instructions_choose_the_system_message(tmp_path):
    systems = {}
    for flag in (["--instructions", "none"], ["--compact"], []):
        out = tmp_path / (flag[-1].lstrip("-") if flag else "full")
        assert main(["data", "synth", "--out", str(out), "--n", "400", "--no-progress", *flag]) == 0
        rows = pq.read_table(out / "rl_train.parquet").to_pylist()
        systems[out.name] = {m["content"] for r in rows for m in r["prompt"] if m["role"] == "system"}
        assert json.loads((out / "manifest.json").read_text())["options"]["instructions"] == (
            flag[-1].lstrip("-") if flag else "full")
    assert systems["none"] == set()
    assert len(systems["compact"]) == len(systems["full"]) == 1
    assert len(next(iter(systems["compact"]))) < len(next(iter(systems["full"])))


def _judgments(tmp_path, n_good=200):
    lines = ["q\tname\tgrade\tbrand"]
    for i in range(n_good):
        lines.append(f"query {i % 40}\titem {i}\t{['Exact', 'Partial', 'Irrelevant'][i % 3]}\tB{i % 5}")
    bad = ["\titem x\tExact\tB", "query 1\t\tExact\tB", "query 2\titem y\tGreat\tB", "query 0\titem 0\tPartial\tB0"]
    path = tmp_path / "judg.tsv"
    path.write_text("\n".join(lines + bad) + "\n", encoding="utf-8")
    return path, n_good, len(bad)


def test_prepare_generic_skip_writes_full_report(tmp_path, capsys):
    path, n_good, n_bad = _judgments(tmp_path)
    out = tmp_path / "out"
    rc = main(["data", "prepare", "--input", str(path), "--columns", "query=q,title=name,label=grade,"
               "attribute_columns=brand", "--schema", "wands", "--on-error", "skip", "--out", str(out),
               "--no-progress"])
    assert rc == 0
    lines = [json.loads(x) for x in (out / "dropped.jsonl").read_text().splitlines()]
    summary = lines[0]["summary"]
    assert summary == {"input": n_good + n_bad, "kept": n_good, "dropped": n_bad,
                       "by_reason": {"empty_query": 1, "empty_title": 1, "unknown_label": 1,
                                     "conflicting_duplicate": 1}}
    assert [d["row"] for d in lines[1:]] == [n_good + 1, n_good + 2, n_good + 3, n_good + 4]
    m = json.loads((out / "manifest.json").read_text())
    assert sum(m["pairs_per_split"].values()) == n_good
    row = pq.read_table(out / "rl_train.parquet").slice(0, 1).to_pylist()[0]
    assert row["data_source"] == "judg" and row["extra_info"]["schema"] == "wands"
    assert row["reward_model"]["ground_truth"] in {"1", "2", "3"}


def test_prepare_raise_is_a_clear_cli_error(tmp_path, capsys):
    path, n_good, _ = _judgments(tmp_path)
    rc = main(["data", "prepare", "--input", str(path), "--columns", "query=q,title=name,label=grade",
               "--schema", "wands", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"judg.tsv: row {n_good + 1}, field 'q': empty query [empty_query]" in err
    assert not (tmp_path / "o" / "rl_train.parquet").exists()


def test_prepare_wands_layout_and_sft_from_teacher_file(tmp_path, capsys):
    d = tmp_path / "wands"
    d.mkdir()
    (d / "query.csv").write_text("query_id\tquery\tquery_class\n0\tsalon chair\tMassage Chairs\n"
                                 "1\tsmart coffee table\tCoffee & Cocktail Tables\n", encoding="utf-8")
    (d / "product.csv").write_text(
        "product_id\tproduct_name\tproduct_class\tcategory hierarchy\tproduct_description\tproduct_features\t"
        "rating_count\taverage_rating\treview_count\n"
        + "".join(f"{i}\tproduct {i}\tClass {i % 3}\tA / B\tdesc {i}\tcolor:c{i % 4}\t1\t4.0\t1\n" for i in range(30)),
        encoding="utf-8")
    (d / "label.csv").write_text("id\tquery_id\tproduct_id\tlabel\n" + "".join(
        f"{i}\t{i % 2}\t{i}\t{['Exact', 'Partial', 'Irrelevant'][i % 3]}\n" for i in range(30)), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["data", "prepare", "--wands", str(d), "--out", str(out), "--splits", "1/0/0", "--no-progress",
                 "--no-balance"]) == 0
    pairs = list(iter_pairs_parquet(out / "pairs_train.parquet"))
    assert len(pairs) == 30 and {p.source for p in pairs} == {"wands"}
    # A teacher file written by "some model": one answer wrong, one missing.
    teacher = tmp_path / "teacher.jsonl"
    with open(teacher, "w") as f:
        for p in pairs[2:]:
            label = str(p.level) if p is not pairs[2] else str(p.level % 3 + 1)
            f.write(json.dumps({"pair_id": p.pair_id, "response": f"{label}\n<think>\nbecause\n</think>"}) + "\n")
    capsys.readouterr()
    assert main(["data", "sft", "--pairs", str(out / "pairs_train.parquet"), "--teacher", str(teacher),
                 "--out", str(tmp_path / "sft.parquet"), "--schema", "wands",
                 "--problems", str(tmp_path / "problems.jsonl")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res == {"rows_in": 30, "rows_out": 27, "dropped": {"teacher_missing": 2, "teacher_wrong_label": 1}}
    assert len((tmp_path / "problems.jsonl").read_text().splitlines()) == 3


def test_rule_teacher_file_round_trip_via_cli(tmp_path, capsys):
    from taosr1_verl.data.builders import write_teacher_jsonl

    out = tmp_path / "syn"
    assert main(["data", "synth", "--out", str(out), "--n", "400", "--no-progress", "--splits", "1/0/0"]) == 0
    pairs = list(iter_pairs_parquet(out / "pairs_train.parquet"))
    write_teacher_jsonl(pairs, tmp_path / "t.jsonl", rule_teacher)
    capsys.readouterr()
    assert main(["data", "sft", "--pairs", str(out / "pairs_train.parquet"), "--teacher", str(tmp_path / "t.jsonl"),
                 "--out", str(tmp_path / "sft.parquet")]) == 0
    assert json.loads(capsys.readouterr().out.strip())["rows_out"] == 400
    a = pq.read_table(tmp_path / "sft.parquet").column("messages").to_pylist()
    b = pq.read_table(out / "sft_train.parquet").column("messages").to_pylist()
    assert [m[2] for m in a] == [m[2] for m in b]


# ---- resume: complete only while options, inputs and every output match ------------------------------

def _prepare(path, out, *extra):
    return main(["data", "prepare", "--input", str(path), "--columns", "query=q,title=name,label=grade",
                 "--schema", "wands", "--on-error", "skip", "--out", str(out), "--no-progress", *extra])


def _hashes(out):
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())
            if p.is_file() and p.name != "manifest.json"}


def test_rows_appended_to_the_input_or_a_deleted_output_rebuild(tmp_path, caplog):
    path, n_good, n_bad = _judgments(tmp_path)
    out = tmp_path / "out"
    assert _prepare(path, out) == 0
    with caplog.at_level("INFO"):
        assert _prepare(path, out) == 0
    assert "nothing to do" in caplog.text
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(f"new query {i}\tnew item {i}\tExact\tB\n" for i in range(30))
    caplog.clear()
    with caplog.at_level("INFO"):
        assert _prepare(path, out) == 0
    assert "nothing to do" not in caplog.text and "size" in caplog.text
    m = json.loads((out / "manifest.json").read_text())
    assert m["input"]["input"] == n_good + n_bad + 30 and sum(m["pairs_per_split"].values()) == n_good + 30
    (out / "rl_train.parquet").unlink()
    assert _prepare(path, out) == 0
    assert pq.read_table(out / "rl_train.parquet").num_rows == m["files"]["rl_train.parquet"]["n_out"]


def test_split_files_of_another_seed_left_by_an_interrupted_rebuild_are_not_accepted(tmp_path):
    # The example: seed 0 done; a seed-1 rebuild interrupted after its split files were renamed into
    # place (here: copied over); rerunning seed 0 must rebuild, not report "already prepared" over them.
    import shutil

    path, _, _ = _judgments(tmp_path)
    out, other = tmp_path / "out", tmp_path / "seed1"
    assert _prepare(path, out, "--seed", "0") == 0
    ref = _hashes(out)
    assert _prepare(path, other, "--seed", "1") == 0
    for name in ("pairs_train.parquet", "pairs_val.parquet", "pairs_test.parquet"):
        shutil.copy(other / name, out / name)
    assert _hashes(out) != ref
    assert _prepare(path, out, "--seed", "0") == 0
    assert _hashes(out) == ref


def _run_killed_at(step, argv):
    """Run the CLI in a forked child that SIGKILLs itself right after its ``step``-th file step."""
    import multiprocessing
    import os

    def child():
        os.environ["TAOSR1_KILL_AT_FILE_STEP"] = str(step)
        os._exit(main(argv))

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(120)
    return proc.exitcode


def test_an_interrupted_rebuild_at_any_file_step_is_never_taken_as_complete(tmp_path):
    """Seed 0 finishes; a seed-1 rebuild is killed after its k-th rename/removal, for every k; the next
    seed-0 run must leave exactly the files of a clean seed-0 build (never "already prepared" over a mix)."""
    import signal

    path, _, _ = _judgments(tmp_path)
    ref = {}
    for seed in (0, 1):
        assert _prepare(path, tmp_path / f"ref{seed}", "--seed", str(seed)) == 0
        ref[seed] = _hashes(tmp_path / f"ref{seed}")
    assert ref[0]["pairs_train.parquet"] != ref[1]["pairs_train.parquet"]
    out = tmp_path / "out"
    argv1 = ["data", "prepare", "--input", str(path), "--columns", "query=q,title=name,label=grade", "--schema",
             "wands", "--on-error", "skip", "--out", str(out), "--no-progress", "--seed", "1"]
    step, finished = 0, False
    while not finished:
        step += 1
        assert _prepare(path, out, "--seed", "0") == 0
        assert _hashes(out) == ref[0], f"step {step}"
        code = _run_killed_at(step, argv1)
        finished = code == 0
        assert finished or code == -signal.SIGKILL
        # Whatever the kill left, a manifest that reads complete vouches for exactly its own files.
        m = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else None
        if m is not None and m.get("complete"):
            seed = m["options"]["seed"]
            assert _hashes(out) == ref[seed], f"step {step}: manifest of seed {seed} over other files"
    assert step > 10 and _hashes(out) == ref[1]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging or temp file left


def test_nonsense_options_are_clear_errors(tmp_path, capsys):
    path, _, _ = _judgments(tmp_path)
    try:
        rc = _prepare(path, tmp_path / "o", "--per-class", "0")
    except SystemExit as e:  # argparse's own exit, when main() lets it through
        rc = e.code
    assert rc == 2 and "--per-class: expected a positive integer, got 0" in capsys.readouterr().err
    rc = _prepare(path, tmp_path / "o", "--splits", "train=0.5,x/../../../escape=0.5")
    assert rc == 2 and "split name 'x/../../../escape'" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*escape*"))
    assert _prepare(tmp_path, tmp_path / "o") == 2 and "not a file" in capsys.readouterr().err


def test_nfc_and_nfd_spellings_of_a_query_land_in_one_split(tmp_path):
    import unicodedata

    lines = ["q\tname\tgrade"]
    for i in range(200):
        q = f"caf\u00e9 cr\u00e8me {i}"
        lines += [f"{q}\titem a{i}\tExact", f"{unicodedata.normalize('NFD', q)}\titem b{i}\tPartial"]
    path = tmp_path / "u.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert _prepare(path, out) == 0
    tr, va, te = (_queries(out / f"pairs_{s}.parquet") for s in ("train", "val", "test"))
    assert len(tr | va | te) == 200 and not (tr & te) and not (tr & va) and not (va & te)


def test_manifest_and_drop_report_are_readable_like_other_outputs(tmp_path):
    import os

    path, _, _ = _judgments(tmp_path)
    old = os.umask(0o022)
    try:
        assert _prepare(path, tmp_path / "out") == 0
    finally:
        os.umask(old)
    for name in ("manifest.json", "dropped.jsonl", "rl_train.parquet"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o644, name


def test_sigterm_mid_build_removes_temporary_files_and_ends_with_one_line(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "syn"
    proc = subprocess.Popen([sys.executable, "-m", "taosr1_verl.cli", "data", "synth", "--out", str(out), "--n",
                             "300000", "--no-progress"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".staging-*/.pairs_*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("taosr1 data synth: terminated; temporary files removed")
    assert list(out.iterdir()) == []
