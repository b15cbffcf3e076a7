"""Every user mistake ends a command with exit status 2 and one line ``taosr1 <cmd>: error: ...`` that names
the file, line or option; ``-v`` adds the traceback; Ctrl-C is one line and 130. Each case once raised a
traceback, or named neither file nor line, or was found only after the work was done."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from taosr1_verl.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small prepared dataset and the hostile files the cases point at."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "syn"
    assert main(["data", "synth", "--out", str(data), "--n", "120", "--no-progress"]) == 0
    f = {"root": root, "rl": data / "rl_train.parquet", "eval": data / "eval_test.parquet",
         "pairs": data / "pairs_train.parquet"}
    f["file"] = root / "a_file"
    f["file"].write_text("x")
    f["dir"] = root / "a_dir"
    f["dir"].mkdir()
    f["fake_parquet"] = root / "fake.parquet"
    f["fake_parquet"].write_text("query,title\nq,t\n")
    f["ok"] = root / "ok.jsonl"
    f["ok"].write_text('{"query": "oak table", "title": "Oak table"}\n')
    f["bad_utf8"] = root / "bad.jsonl"
    f["bad_utf8"].write_bytes(b'{"query": "a", "title": "b"}\n\n{"query": "q\xff", "title": "t"}\n')
    f["bad_utf8_csv"] = root / "bad.csv"
    f["bad_utf8_csv"].write_bytes(b"query,title\nq,t\nq,t\xfe\n")
    f["responses"] = root / "responses.jsonl"
    f["responses"].write_bytes(b'{"response": "4\\n<think>x</think>"}\n{"response": "\xff"}\n')
    f["unclosed"] = root / "unclosed.csv"
    f["unclosed"].write_text('query,title\nq,"opens\nq2,t2\nq3,t3\n')
    f["null_tokens"] = root / "null_tokens.jsonl"
    f["null_tokens"].write_text('{"index": 0, "responses": ["4"], "n_tokens": [null]}\n')
    f["dup"] = root / "dup.csv"
    f["dup"].write_text("query,title,title\nq,a,b\n")
    return f


def _one_error_line(capsys: pytest.CaptureFixture[str], cmd: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in err if line.startswith(f"taosr1 {cmd}: error: ")]
    assert len(errors) == 1, err
    assert not any("Traceback" in line for line in err), err
    return errors[0]


CASES = [
    # (argv with {placeholders}, command shown in the message, fragment of the message)
    ("score --model {tiny} --input {dir}", "score", "argument --input: {dir}: is a directory"),
    ("score --model {tiny} --input {ok} --output {dir}", "score", "argument --output: {dir}: is a directory"),
    ("score --model {tiny} --input {ok} --output {file}/x.jsonl", "score", "{file} is a file, not a directory"),
    ("score --model {tiny} --input {bad_utf8}", "score", "{bad_utf8}:3: not valid UTF-8"),
    ("score --model {tiny} --input {bad_utf8_csv}", "score", "{bad_utf8_csv}:3: not valid UTF-8"),
    ("score --model {tiny} --input {unclosed}", "score", "{unclosed}:2: not valid CSV (unexpected end of data)"),
    ("score --model {tiny} --input {dup}", "score", "{dup}:1: duplicate column(s) ['title']"),
    ("score --model {tiny} --input {fake_parquet}", "score", "{fake_parquet}: parquet is not a score input"),
    ("score --model runs/no_such_model --input {ok}", "score", "runs/no_such_model: no such model directory"),
    ("score --model {file} --input {ok}", "score", "{file}: is a file; give the model directory"),
    ("score --model {dir} --input {ok}", "score", "{dir}: not a model directory (no config.json)"),
    ("score --model {tiny} --input {ok} --batch-size 0", "score", "argument --batch-size"),
    ("score --model {tiny} --input {ok} --backend openai --base-url localhost:8000", "score",
     "must start with http://"),
    ("check --responses {dir}", "check", "argument --responses: {dir}: is a directory"),
    ("check --responses {responses}", "check", "{responses}:2: not valid UTF-8"),
    ("check --tokenizer {dir}", "check", "{dir}: not a tokenizer directory"),
    ("check --tokenizer {root}/missing_tok", "check", "{root}/missing_tok: no such tokenizer directory"),
    ("check --tokenizer {file}", "check", "{file}: is a file"),
    ("pairs --responses {dir} --prompts {rl} --out {root}/p1", "pairs", "argument --responses: {dir}: is a directory"),
    ("pairs --responses {ok} --prompts {dir} --out {root}/p2", "pairs", "argument --prompts: {dir}: is a directory"),
    ("pairs --responses {ok} --prompts {fake_parquet} --out {root}/p3", "pairs",
     "argument --prompts: {fake_parquet}: not a parquet file"),
    ("pairs --responses {ok} --prompts {rl} --out {file}", "pairs", "argument --out: {file}: exists and is not a dir"),
    ("pairs --responses {ok} --prompts {rl} --out {file}/sub", "pairs", "{file} is a file, not a directory"),
    ("pairs --responses {ok} --prompts {rl} --out {root}/p4 --reward {{bad", "pairs", "argument --reward: not valid JSON"),
    ('pairs --responses {ok} --prompts {rl} --out {root}/p5 --reward {{"malformed_penalty":"abc"}}', "pairs",
     "reward option malformed_penalty must be a number, got 'abc'"),
    ('pairs --responses {ok} --prompts {rl} --out {root}/p6 --reward {{"no_such":1}}', "pairs",
     "unknown TaoSR1 reward option(s) ['no_such']"),
    ("pairs --responses {null_tokens} --prompts {rl} --out {root}/p7", "pairs",
     "{null_tokens}:1: field 'n_tokens' must hold 1 token count(s)"),
    ("passn --prompts {rl} --model runs/no_such_model --out {root}/pn1 --backend hf", "passn",
     "runs/no_such_model: no such model directory"),
    ("passn --prompts {rl} --model runs/no_such_model --out {root}/pn2 --backend vllm", "passn",
     "runs/no_such_model: no such model directory"),
    ("passn --prompts {dir} --model {tiny} --out {root}/pn3", "passn", "argument --prompts: {dir}: is a directory"),
    ("passn --prompts {rl} --model {tiny} --out {root}/pn4 -n 0", "passn", "argument -n/--n"),
    ("eval --model {tiny} --data {dir} --out {root}/e1", "eval", "argument --data: {dir}: is a directory"),
    ("eval --model {tiny} --data {fake_parquet} --out {root}/e2", "eval", "{fake_parquet}: not a parquet file"),
    ("eval --model {tiny} --data {eval} --out {file}", "eval", "argument --out: {file}: exists and is not a directory"),
    ("eval --model {tiny} --data {eval} --out {root}/e3 --modes bogus", "eval", "unknown evaluation mode(s) ['bogus']"),
    ("eval --model {tiny} --data {eval} --out {root}/e4 --backend openai --base-url http://127.0.0.1:1/v1 "
     "--modes generate", "eval", "--modes generate needs --backend hf or vllm"),
    ("autofas teacher --pairs {dir} --out {root}/t.parquet", "autofas teacher", "argument --pairs: {dir}: is a dir"),
    ("autofas teacher --pairs {fake_parquet} --out {root}/t.parquet", "autofas teacher",
     "{fake_parquet}: not a parquet file"),
    ("autofas teacher --pairs {rl} --out {root}/t.parquet", "autofas", "{rl}: not a pairs parquet (missing column"),
    ("data stats {rl} --tokenizer {dir}", "data", "{dir}: not a tokenizer directory"),
    ("data stats {rl} --tokenizer runs/no_such_tok", "data", "runs/no_such_tok: no such tokenizer directory"),
    ("autofas teacher --synthetic 8 --out {dir}", "autofas teacher", "argument --out: {dir}: is a directory"),
    ("autofas teacher --synthetic 8 --out {file}/t.parquet", "autofas teacher", "{file} is a file, not a directory"),
    ("autofas search --teacher-cache {dir} --out {root}/af", "autofas search", "argument --teacher-cache: {dir}"),
    ("autofas search --teacher-cache {fake_parquet} --out {root}/af", "autofas search", "not a parquet file"),
    ("demo --run-dir {file}", "demo", "argument --run-dir: {file}: exists and is not a directory"),
    ("dpo --config {dir}", "dpo", "argument --config: {dir}: is a directory"),
    ("dpo model_path=m train_file=t.parquet output_dir=o learning_rate=fast", "dpo",
     "dpo recipe: learning_rate must be a number, got 'fast'"),
    ("dpo model_path=m train_file=t.parquet output_dir=o trl_args.learning_rate=1e-5", "dpo",
     "['learning_rate'] are recipe keys: set them as learning_rate=..."),
    ("recipe validate {root}/no_such.yaml", "recipe", "no_such.yaml: recipe file not found"),
    # checked before TRL and torch are imported (they take about 20 s)
    ("dpo model_path={root}/no_such_model train_file={rl} output_dir={root}/o", "dpo",
     "model_path={root}/no_such_model: no such model directory"),
    ("dpo model_path={root} train_file={root}/none.parquet output_dir={root}/o", "dpo",
     "train_file={root}/none.parquet: no such file"),
]


@pytest.mark.parametrize(("argv", "cmd", "fragment"), CASES, ids=[c[0].split(" --")[0] + f"-{i}" for i, c in
                                                                    enumerate(CASES)])
def test_a_user_mistake_is_one_line_and_exit_2(argv, cmd, fragment, files, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(files["root"])  # relative paths such as runs/no_such_model are relative to here
    names = {k: str(v) for k, v in files.items()} | {"tiny": str(tiny_model_dir)}
    args = [a.format(**names) for a in argv.split(" ")]
    assert main(args) == 2
    line = _one_error_line(capsys, cmd)
    assert fragment.format(**names) in line


def test_verbose_adds_the_traceback(files, capsys):
    assert main(["-v", "check", "--responses", str(files["responses"])]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith(f"taosr1 check: error: {files['responses']}:2:")


def test_ctrl_c_is_one_line_and_130(files, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("taosr1_verl.scoring.io.read_score_input", interrupted)
    assert main(["score", "--model", "x", "--input", str(files["ok"])]) == 130
    assert capsys.readouterr().err.strip() == "taosr1 score: interrupted"


@pytest.mark.parametrize(("argv", "line"), [
    (["score", "--model", "x", "--input", "{ok}"], "taosr1 score: terminated"),
    (["data", "stats", "{rl}"], "taosr1 data stats: terminated"),
    (["data", "synth", "--out", "{out}", "--n", "50"],
     "taosr1 data synth: terminated; temporary files removed, a rerun continues from the last finished step"),
])
def test_sigterm_ends_every_command_with_one_line_and_143(files, tmp_path, capsys, monkeypatch, argv, line):
    import os
    import signal

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    for target in ("taosr1_verl.scoring.io.read_score_input", "taosr1_verl.data.stats.dataset_stats",
                   "taosr1_verl.data.prepare.prepare_dataset"):
        monkeypatch.setattr(target, terminated)
    before = signal.getsignal(signal.SIGTERM)
    argv = [a.format(ok=files["ok"], rl=files["rl"], out=tmp_path / "o") for a in argv]
    assert main(argv) == 143
    assert capsys.readouterr().err.strip() == line
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the CLI's only while a command runs


def test_a_dead_endpoint_fails_at_once_naming_the_url(files, tiny_model_dir, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    assert main(["score", "--model", str(tiny_model_dir), "--input", str(files["ok"]), "--backend", "openai",
                 "--base-url", url]) == 2
    assert f"{url}/models: cannot reach the endpoint" in _one_error_line(capsys, "score")


def test_a_missing_model_path_never_asks_the_hub(files, monkeypatch, capsys):
    """A path-like --model that does not exist fails before transformers is asked (no hub lookup at all)."""
    import transformers

    def no_hub(*args, **kwargs):
        raise AssertionError("from_pretrained was called for a missing local path")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_hub)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_hub)
    monkeypatch.chdir(files["root"])
    (files["root"] / "runs").mkdir(exist_ok=True)  # runs/tiny: a missing model in a local runs/, not a hub id
    for model in ("runs/tiny", "./tiny", "~/no_such_taosr1_model", "a/b/c"):
        assert main(["score", "--model", model, "--input", str(files["ok"])]) == 2
        assert "no such model directory" in _one_error_line(capsys, "score")


def test_a_hub_id_is_not_taken_for_a_missing_local_path(tmp_path, monkeypatch):
    from taosr1_verl.models.load import looks_like_path, resolve_model

    monkeypatch.chdir(tmp_path)
    assert looks_like_path("Qwen/Qwen3-8B")  # offline (these tests) and not in the hub cache: a missing path
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve_model("Qwen/Qwen3-8B") == ("Qwen/Qwen3-8B", False)  # online, no ./Qwen here: the hub's
    (tmp_path / "Qwen").mkdir()
    assert looks_like_path("Qwen/Qwen3-8B")  # now a missing model inside a local directory


def test_score_output_checked_before_any_scoring(files, tiny_model_dir, capsys):
    """--output pointing at a directory fails while parsing the options, before the model is loaded."""
    assert main(["score", "--model", "runs/not_loaded", "--input", str(files["ok"]), "--output",
                 str(files["dir"])]) == 2
    assert "argument --output" in _one_error_line(capsys, "score")


def test_check_with_nothing_to_check_says_so(capsys):
    assert main(["check"]) == 2
    assert "nothing to check" in _one_error_line(capsys, "check")


def test_valid_inputs_still_work(files, tiny_model_dir, capsys):
    out = files["root"] / "scored.jsonl"
    assert main(["score", "--model", str(tiny_model_dir), "--input", str(files["ok"]), "--output", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["title"] == "Oak table"
    responses = files["root"] / "good_responses.jsonl"
    responses.write_text('\ufeff{"response": "4\\n<think>x</think>"}\n\n{"response": "x"}\n')
    assert main(["check", "--responses", str(responses)]) == 0
    assert sum(json.loads(capsys.readouterr().out).values()) == 2
