"""The command line as a user meets it: every command's ``--help``, the documented exit codes, and
the main error paths (missing models and stores, bad options) through ``auditor.cli.main``.

Errors must be one readable line naming the problem with the documented exit code, never a
traceback; with ``--json`` a script also gets the error as JSON on stdout. No test here loads a
model or trains one: the error paths are checked before any model load, which is part of what is
tested (a typo must not cost a model load).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import auditor.cli as cli
from auditor.cli import main
from auditor.runtime.store import open_store

ROOT = Path(__file__).resolve().parents[2]
# command -> whether it offers --json (every command does: scripts read its stdout)
COMMANDS: dict[tuple[str, ...], bool] = {
    ("interactions",): True,
    ("audit",): True,
    ("report",): True,
    ("compare",): True,
    ("testbed", "build"): True,
    ("testbed", "validate"): True,
    ("records", "verify"): True,
    ("records", "export"): True,
    ("records", "copy"): True,
    ("records", "stats"): True,
}
# imported by the commands when they run, never while the parsers are built (--help must be instant)
HEAVY_MODULES = ("torch", "transformers", "numpy", "scipy", "numba", "highspy", "bentoml", "pydantic", "rich")
DOCUMENTED_CODES = {0: "EXIT_OK", 1: "EXIT_INTERNAL", 2: "EXIT_BAD_INPUT", 3: "EXIT_MISSING_RESOURCE",
                    4: "EXIT_NOT_ACCEPTED", 130: "EXIT_INTERRUPTED"}


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
# Help and exit codes
# ---------------------------------------------------------------------------------------------
def test_top_level_help_lists_commands_and_exit_codes(capsys):
    text = _help(capsys)
    for command in ("interactions", "audit", "report", "compare", "testbed"):
        assert command in text
    assert "exit codes: 0 ok; 1 internal error" in text and "3 missing model or" in text and "130" in text


@pytest.mark.parametrize("argv", list(COMMANDS), ids=" ".join)
def test_every_command_has_informative_help(capsys, argv):
    text = _help(capsys, *argv)
    assert text.startswith(f"usage: interaction-auditor {' '.join(argv)}")
    assert len(text.splitlines()) > 8  # a description and documented options, not a bare usage line
    assert ("--json" in text) is COMMANDS[argv]


@pytest.mark.parametrize("argv", list(COMMANDS), ids=" ".join)
def test_command_help_documents_its_exit_codes(capsys, argv):
    assert "exit codes" in _help(capsys, *argv)


@pytest.mark.parametrize("argv", [(), ("testbed",), *COMMANDS], ids=lambda argv: " ".join(argv) or "top")
def test_help_imports_nothing_heavy(argv):
    """``--help`` in a fresh interpreter: the parsers are built and the help printed without importing
    torch, transformers or even numpy (torch alone took ~6 s here before the imports were made lazy)."""
    script = (
        "import sys\n"
        "from auditor.cli import main\n"
        "try:\n"
        f"    main({[*argv, '--help']!r})\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        f"heavy = [name for name in {HEAVY_MODULES!r} if name in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('usage ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: interaction-auditor") and done.stdout.endswith("usage ok\n")


def test_parser_constants_match_the_library():
    """The parsers use light copies of library constants (so --help imports nothing heavy); they must agree."""
    from auditor.cli import interactions_command as interactions
    from auditor.engine.interactions import DEFAULT_SALIENT_THRESHOLD
    from auditor.testbed import models, names, specs
    from auditor.testbed.specs import model_specs

    assert interactions.SALIENT_THRESHOLD == DEFAULT_SALIENT_THRESHOLD
    from auditor.cli import testbed_command
    from auditor.testbed import acceptance

    assert testbed_command.DEFAULT_PROMPTS == acceptance.DEFAULT_PROMPTS == 40  # the owners' acceptance
    # models takes its names from the light module, so the parsers' --only choices are the library's
    assert models.MODEL_NAMES is names.MODEL_NAMES and specs.OVERFIT_FAMILY is names.OVERFIT_FAMILY
    assert specs.ENV_ROOT is names.ENV_ROOT and list(model_specs()) == list(names.MODEL_NAMES)


def test_documented_exit_codes_are_the_constants():
    """The docstring lists every code; the constants have those values."""
    listed = {int(code) for code in re.findall(r"^- (\d+) ", cli.__doc__ or "", flags=re.M)}
    assert listed == set(DOCUMENTED_CODES)
    for code, name in DOCUMENTED_CODES.items():
        assert getattr(cli, name) == code


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["no-such-command"], ["audit", "--prompt", "x"], ["audit", "--model", "m", "--prompt", "x",
                                                                       "--dtype", "float99"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "--prompt", "x", "--json"], "the following arguments are required: --model"),
        (["report", "--format", "pdf", "--json"], "argument --format: invalid choice: 'pdf'"),
        (["testbed", "build", "--only", "nope", "--json"], "argument --only: invalid choice: 'nope'"),
        (["testbed", "validate", "--baseline", "zeros", "--json"], "argument --baseline: invalid choice: 'zeros'"),
        (["compare", "--model-a", "a", "--model-b", "b", "--prompts", "p", "--n", "ten", "--json"],
         "argument --n: invalid int value: 'ten'"),
    ],
)
def test_usage_errors_under_json_are_also_json_on_stdout(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert "usage:" in captured.err and message in captured.err
    payload = json.loads(captured.out)
    assert payload["exit_code"] == 2 and message in payload["error"]


def test_cli_caps_match_the_library():
    from auditor.cli import audit_command as audit
    from auditor.cli import compare_command as compare
    from auditor.cli import interactions_command as interactions
    from auditor.game.players import DEFAULT_MAX_PLAYERS
    from auditor.engine.extraction import MAX_PLAYERS

    assert interactions.MAX_PLAYERS == MAX_PLAYERS
    assert audit.MAX_PLAYERS == compare.MAX_PLAYERS == DEFAULT_MAX_PLAYERS


def test_internal_errors_are_one_line_unless_debug(capsys, monkeypatch, tmp_path):
    values = tmp_path / "v.json"
    values.write_text("[0, 1]")

    def boom(path: Path):
        raise RuntimeError("boom in the solver")

    monkeypatch.setattr("auditor.cli.interactions_command.load_values", boom)
    code, out, err = _run(capsys, "interactions", "--values", str(values))
    assert code == 1 and "internal error: RuntimeError: boom in the solver" in err and "--debug" in err
    assert out == ""
    code = main(["--debug", "interactions", "--values", str(values)])
    assert code == 1 and "Traceback" in capsys.readouterr().err

    def interrupted(path: Path):
        raise KeyboardInterrupt

    monkeypatch.setattr("auditor.cli.interactions_command.load_values", interrupted)
    assert _run(capsys, "interactions", "--values", str(values))[0] == 130


# ---------------------------------------------------------------------------------------------
# interactions
# ---------------------------------------------------------------------------------------------
def test_interactions_json_result(capsys, tmp_path):
    values = tmp_path / "and.json"
    values.write_text("[0, 0, 0, 1]")  # v = AND(a, b)
    code, out, err = _run(capsys, "interactions", "--values", str(values), "--names", "a,b", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == 2 and result["names"] == ["a", "b"] and result["gap"] <= 1e-6
    [term] = result["salient"]
    assert term["kind"] == "and" and term["players"] == [0, 1]
    lowest = 1 - 4 * result["tau"] - 1e-9  # q may absorb at most tau per state
    assert lowest <= term["value"] <= 1


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, [], "no such file"),
        ("[1, 2, 3]", [], "length must be 2^n"),
        ("[1, NaN]", [], "entry 1 is NaN"),
        ("{\"a\": 1}", [], "cannot read"),
        ("[0, 1]", ["--names", "a,b"], "--names: got 2 names for 1 players"),
        ("[0, 1]", ["--qthres", "2"], "--qthres"),
    ],
)
def test_interactions_bad_input_exit_2(capsys, tmp_path, content, extra, message):
    path = tmp_path / "values.json"
    if content is not None:
        path.write_text(content)
    code, out, err = _run(capsys, "interactions", "--values", str(path), *extra)
    assert code == 2 and message in err and err.startswith("error: --")
    assert out == ""


def test_json_mode_reports_errors_on_stdout(capsys, tmp_path):
    code, out, err = _run(capsys, "interactions", "--values", str(tmp_path / "missing.json"), "--json")
    assert code == 2 and "no such file" in err
    payload = json.loads(out)
    assert payload["exit_code"] == 2 and "no such file" in payload["error"]


# ---------------------------------------------------------------------------------------------
# audit (no model is loaded: the errors come first)
# ---------------------------------------------------------------------------------------------
def test_audit_missing_model_exit_3(capsys, tmp_path):
    code, _, err = _run(capsys, "audit", "--model", "/nonexistent/model", "--prompt", "Alice stole a bicycle")
    assert code == 3 and "model directory '/nonexistent/model' does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "audit", "--model", str(tmp_path / "empty"), "--prompt", "x")
    assert code == 3 and "no config.json" in err
    code, _, err = _run(capsys, "audit", "--model", "testbed:no-such", "--prompt", "x")
    assert code == 3 and "unknown testbed model" in err and "clean" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "0"], "--n must be at least 1"),
        (["--n", "17"], "--n 17 exceeds the cap of 16"),
        (["--qthres", "1.5"], "--qthres"),
        (["--top", "0"], "--top"),
        (["--max-answer-tokens", "0"], "--max-answer-tokens"),
        (["--answer", ""], "--answer is empty"),
        (["--players", "|"], "--players"),
    ],
)
def test_audit_bad_options_exit_2_before_loading_the_model(capsys, extra, message):
    # the model does not exist: exit 2 (not 3) proves the options were checked first
    code, _, err = _run(capsys, "audit", "--model", "/nonexistent/model", "--prompt", "Alice stole", *extra)
    assert code == 2 and message in err


def test_audit_empty_prompt_exit_2(capsys):
    code, _, err = _run(capsys, "audit", "--model", "/nonexistent/model", "--prompt", "  ")
    assert code == 2 and "--prompt is empty" in err


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def test_report_missing_store_exit_3(capsys, tmp_path):
    code, out, err = _run(capsys, "report", "--store", "sqlite:////nonexistent/x.sqlite")
    assert code == 3 and "no audit store at '/nonexistent/x.sqlite'" in err and out == ""
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 200)
    code, _, err = _run(capsys, "report", "--store", str(garbage), "--out", str(tmp_path / "r.html"))
    assert code == 3 and "cannot read the audit store" in err
    assert not garbage.with_name("r.html").exists()


def test_report_refuses_files_that_are_not_audit_stores(capsys, tmp_path):
    """A mistyped --store naming an empty file, another application's SQLite database or a directory is
    exit 3 with a message, and the file is left exactly as it was (a report never writes to a store)."""
    import sqlite3

    empty = tmp_path / "empty.sqlite"
    empty.touch()
    foreign = tmp_path / "other-app.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
    connection.close()
    before = {path: path.read_bytes() for path in (empty, foreign)}
    for store, message in ((str(empty), "is not an audit store (no audits or meta table)"),
                           (f"sqlite:///{foreign}", "is not an audit store"),
                           (str(tmp_path), "is a directory, not an audit store file")):
        code, out, err = _run(capsys, "report", "--store", store, "--out", str(tmp_path / "r.html"), "--json")
        assert code == 3 and message in err and len(err.strip().splitlines()) == 1
        assert json.loads(out) == {"error": err.strip(), "exit_code": 3}
    assert {path: path.read_bytes() for path in before} == before
    assert not (tmp_path / "r.html").exists()


def test_report_without_a_store_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("AUDITOR_STORE_URL", raising=False)
    code, _, err = _run(capsys, "report")
    assert code == 2 and "AUDITOR_STORE_URL" in err


@pytest.fixture
def store_url(tmp_path) -> str:
    from record_samples import sample_record as _record

    url = f"sqlite:///{tmp_path / 'audits.sqlite'}"
    store = open_store(url)
    for i in range(3):
        store.append(_record(i, "m-a", flagged=i == 0))
    store.close()
    return url


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--from", "yesterday"], "bad --from/--to"),
        (["--from", "0001-01-01T00:00:00+14:00"], "out of range once converted to UTC"),
        (["--to", "nan"], "bad --from/--to"),
        (["--from", "2025-03-02", "--to", "2025-03-01"], "empty period"),
        (["--top", "0"], "--top must be at least 1"),
        (["--json"], "--json prints a summary"),
        (["--out", "/nonexistent/dir/r.html"], "does not exist"),
    ],
)
def test_report_bad_input_exit_2(capsys, store_url, extra, message):
    code, _, err = _run(capsys, "report", "--store", store_url, *extra)
    assert code == 2 and message in err


def test_report_json_summary(capsys, store_url, tmp_path):
    out_file = tmp_path / "march.json"
    code, out, err = _run(capsys, "report", "--store", store_url, "--from", "2025-03-01T12:01:00Z", "--out",
                          str(out_file), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["format"] == "json" and summary["audits"] == 2 and summary["flagged"] == 0  # minutes 1, 2
    assert summary["chain"]["ok"] is True and summary["chain"]["checked"] == 3
    assert json.loads(out_file.read_text())["counts"]["total"] == 2


# ---------------------------------------------------------------------------------------------
# compare and testbed (errors only: a real comparison trains and audits models, tests/metrics/test_compare.py)
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "Alice stole a bicycle. What is Alice charged with? Answer:", "answer": "theft"}\n')
    return path


def test_compare_missing_model_exit_3(capsys, prompts):
    code, _, err = _run(capsys, "compare", "--model-a", "/nonexistent/a", "--model-b", "/nonexistent/b",
                        "--prompts", str(prompts))
    assert code == 3 and "model A: model directory '/nonexistent/a' does not exist" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "/nonexistent/dir/c.json"], "--out"),
        (["--n", "20", "--no-joint"], "--n 20 exceeds the cap of 16"),
        (["--n", "13"], "joint LP's limit"),
        (["--chance-draws", "0"], "--chance-draws"),
        (["--salient-threshold", "0"], "--salient-threshold"),
        (["--show", "-1"], "--show"),
    ],
)
def test_compare_bad_options_exit_2_before_loading_models(capsys, prompts, extra, message):
    code, _, err = _run(capsys, "compare", "--model-a", "/nonexistent/a", "--model-b", "/nonexistent/b",
                        "--prompts", str(prompts), *extra)
    assert code == 2 and message in err


def test_compare_missing_prompts_exit_2(capsys, tmp_path):
    code, _, err = _run(capsys, "compare", "--model-a", "a", "--model-b", "b", "--prompts",
                        str(tmp_path / "none.jsonl"))
    assert code == 2 and "--prompts:" in err and "does not exist" in err
    code, _, err = _run(capsys, "compare", "--model-a", "a", "--model-b", "b", "--prompts", str(tmp_path))
    assert code == 2 and "is not a file" in err


def test_testbed_validate_rejects_too_few_prompts(capsys):
    code, _, err = _run(capsys, "testbed", "validate", "--prompts", "1")
    assert code == 2 and "--prompts must be at least 2" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["testbed", "validate", "--qthres", "1"], "--qthres must be in [0, 1)"),
        (["testbed", "validate", "--workers", "0"], "--workers must be at least 1"),
        (["testbed", "validate", "--resamples", "-1"], "--resamples must be >= 0"),
        (["testbed", "validate", "--subsample", "41"], "--subsample must be between 2 and --prompts (40)"),
        (["testbed", "validate", "--subsample", "1"], "--subsample must be between 2 and --prompts (40)"),
        (["testbed", "validate", "--subsample", "10", "--resamples", "0"], "--subsample needs --resamples > 0"),
        (["testbed", "build", "--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_testbed_bad_options_exit_2_before_any_training(capsys, tmp_path, argv, message):
    code, out, err = _run(capsys, *argv, "--out", str(tmp_path), "--json")
    assert code == 2 and message in err
    payload = json.loads(out)
    assert payload["exit_code"] == 2 and message in payload["error"]
    assert list(tmp_path.iterdir()) == []  # nothing was built


def _fake_built_model(path: Path, name: str, accuracy: float) -> dict:
    """A directory the cache counts as built (``is_built``), with the info a build writes."""
    metrics = {"train": {"accuracy": 1.0, "loss": 0.01}, "heldout": {"accuracy": accuracy, "loss": 0.2},
               "gap": {"accuracy": 1.0 - accuracy, "loss": 0.19}, "conflict": {"accuracy": 0.5, "cue_rate": 0.1}}
    info = {"name": name, "hash": path.name.rsplit("-", 1)[-1], "metrics": metrics,
            "seconds": {"data": 1.0, "warmup": 2.0, "train": 30.0, "total": 33.0}}
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "testbed.json").write_text(json.dumps(info))
    (path / "model.safetensors").write_bytes(f"weights of {name}".encode())
    return info


def test_testbed_build_json_reports_cached_models(capsys, tmp_path):
    """A model already in the cache is found by the real ``build_all`` (nothing is trained) and reported
    with ``cached: true``, its path, its build timings and metrics; stdout is one JSON object."""
    from auditor.testbed.specs import model_dir, model_specs, spec_hash

    spec = model_specs(3, "standard")["shortcut"]
    info = _fake_built_model(model_dir(spec, tmp_path), "shortcut", 0.75)
    code, out, err = _run(capsys, "testbed", "build", "--out", str(tmp_path), "--seed", "3", "--only", "shortcut",
                          "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["root"] == str(tmp_path) and summary["seed"] == 3 and summary["template_set"] == "standard"
    [model] = summary["models"]
    weights = hashlib.sha256(b"weights of shortcut").hexdigest()  # the build's fingerprint: sha256 of its weights
    assert model == {"name": "shortcut", "path": str(model_dir(spec, tmp_path)), "cached": True,
                     "hash": spec_hash(spec), "weights_sha256": weights, "seconds": info["seconds"],
                     "metrics": info["metrics"]}
    assert summary["seconds"] >= 0 and "cached at" in err  # progress went to stderr


def test_testbed_build_json_marks_new_builds(capsys, tmp_path, monkeypatch):
    """Models not in the cache before the command are reported ``cached: false`` (training replaced by a
    builder that writes what a build writes; the real one is tested in tests/testbed/test_testbed.py)."""
    from auditor.testbed import models
    from auditor.testbed.specs import is_built, model_dir, model_specs

    def build_all(names, root, *, seed, template_set, workers, progress, world="judgment"):
        specs = model_specs(seed, template_set)
        built = {}
        for name in names:
            path = model_dir(specs[name], root)
            if not is_built(path):
                _fake_built_model(path, name, 0.5)
            built[name] = path
        return built

    monkeypatch.setattr(models, "build_all", build_all)
    specs = model_specs(0, "standard")
    _fake_built_model(model_dir(specs["clean"], tmp_path), "clean", 0.99)
    code, out, err = _run(capsys, "testbed", "build", "--out", str(tmp_path), "--only", "overfit-2", "clean", "--json")
    assert code == 0, err
    models_out = json.loads(out)["models"]
    assert [(m["name"], m["cached"], m["metrics"]["heldout"]["accuracy"]) for m in models_out] == [
        ("overfit-2", False, 0.5), ("clean", True, 0.99)]
