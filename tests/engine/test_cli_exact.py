"""``interaction-auditor interactions --index ... --order K``: exact values, checked against shapiq."""

from __future__ import annotations

import json

import numpy as np
import pytest

from auditor.cli import main
from shapiq_fixtures import as_vector, games, shapiq_index

N = 5


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    return code, captured.out, captured.err


@pytest.fixture
def game(tmp_path) -> tuple[np.ndarray, str]:
    values = games(N)["soum-high"] + 1.5
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values.tolist()))
    return values, str(path)


@pytest.mark.parametrize(
    ("option", "order", "shapiq_name", "shapiq_order"),
    [
        ("moebius", None, "Moebius", None),
        ("moebius", "2", "Moebius", None),
        ("sii", None, "SII", 2),
        ("sii", "3", "SII", 3),
        ("stii", "3", "STII", 3),
        ("fsii", "2", "FSII", 2),
        ("banzhaf", "2", "BII", 2),
    ],
)
def test_json_gives_the_exact_index(capsys, game, option, order, shapiq_name, shapiq_order) -> None:
    values, path = game
    extra = [] if order is None else ["--order", order]
    code, out, err = _run(capsys, "interactions", "--values", path, "--index", option, *extra, "--json")
    assert code == 0, err
    payload = json.loads(out)
    expected, present = as_vector(shapiq_index(values, shapiq_name, shapiq_order), N)
    k = int(order) if order else (N if option == "moebius" else 2)
    assert payload["order"] == k and payload["n"] == N and len(payload["values"]) == 1 << N
    within = np.array([bin(mask).count("1") <= k for mask in range(1 << N)])
    tol = 1e-6 if option == "fsii" else 1e-12  # shapiq's FSII is a penalised least squares
    np.testing.assert_allclose(np.array(payload["values"])[within], expected[within], rtol=0, atol=tol * 10)
    assert not np.array(payload["values"])[~within].any()
    strongest = max(abs(v) for mask, v in enumerate(payload["values"]) if 0 < mask)
    assert {term["mask"] for term in payload["terms"]} == {
        mask for mask in range(1, 1 << N) if within[mask] and abs(payload["values"][mask]) >= 0.05 * strongest}


@pytest.mark.parametrize(("option", "shapiq_name"), [("shapley", "SV"), ("banzhaf", "BV")])
def test_values_are_per_player(capsys, game, option, shapiq_name) -> None:
    values, path = game
    code, out, err = _run(capsys, "interactions", "--values", path, "--index", option, "--json")
    assert code == 0, err
    payload = json.loads(out)
    expected, _ = as_vector(shapiq_index(values, shapiq_name, 1), N)
    np.testing.assert_allclose(payload["values"], expected[[1 << i for i in range(N)]], rtol=0, atol=1e-12)
    if option == "shapley":
        assert sum(payload["values"]) == pytest.approx(values[-1] - values[0], abs=1e-12)


def test_the_table_names_players_and_shows_the_values(capsys, game) -> None:
    values, path = game
    code, out, err = _run(capsys, "interactions", "--values", path, "--index", "shapley", "--names", "a,b,c,d,e")
    assert code == 0, err
    expected, _ = as_vector(shapiq_index(values, "SV", 1), N)
    top = int(np.argmax(np.abs(expected[[1 << i for i in range(N)]])))
    assert "shapley (exact" in out and f"{expected[1 << top]:+.6g}" in out and "abcde"[top] in out


def test_without_index_the_fit_reports_exact_shapley_beside_the_fit_s(capsys, game) -> None:
    values, path = game
    code, out, err = _run(capsys, "interactions", "--values", path, "--json")
    assert code == 0, err
    payload = json.loads(out)
    expected, _ = as_vector(shapiq_index(values, "SV", 1), N)
    np.testing.assert_allclose(payload["shapley"], expected[[1 << i for i in range(N)]], rtol=0, atol=1e-12)
    assert sum(payload["shapley_of_fit"]) == pytest.approx(payload["values"][-1] + payload["q"][-1], abs=1e-9)
    assert payload["salient"] and payload["extra"]["time_limit_hit"] is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--index", "sii", "--order", "0"], "--order: must be between 1 and n = 5"),
        (["--index", "moebius", "--order", "6"], "--order: must be between 1 and n = 5"),
        (["--index", "shapley", "--order", "2"], "--order: shapley values have order 1"),
        (["--order", "2"], "--order: only with --index"),
        (["--index", "sii", "--qthres", "0.1"], "--qthres: only for the AND-OR fit"),
        (["--index", "stii", "--and-only"], "--and-only: only for the AND-OR fit"),
        (["--index", "fsii", "--threshold", "0"], "--threshold"),
    ],
)
def test_bad_values_exit_2_naming_the_option(capsys, game, extra, message) -> None:
    code, out, err = _run(capsys, "interactions", "--values", game[1], *extra)
    assert code == 2 and message in err and err.startswith("error: --") and out == ""


def test_an_unknown_index_is_a_usage_error(capsys, game) -> None:
    with pytest.raises(SystemExit) as info:
        main(["interactions", "--values", game[1], "--index", "owen"])
    assert info.value.code == 2 and "--index" in capsys.readouterr().err
