"""AuditorSettings: defaults, AUDITOR_* environment variables, overrides, validation messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from auditor.runtime.settings import DEFAULT_MODEL, AuditorSettings, derive_model_label, load_settings, unknown_env_vars


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("AUDITOR_"):
            monkeypatch.delenv(key)


def test_defaults_serve_the_testbed_model_on_cpu():
    s = AuditorSettings()
    assert s.model == DEFAULT_MODEL and s.device == "cpu" and s.audit_device == "cpu"
    assert (s.overfitting_threshold, s.misattribution_threshold) == (0.5, 0.3)
    assert s.fault == "none" and s.auth_token is None
    assert s.metrics_model == "testbed-clean"
    assert s.n_players == 10 and s.answer_tokens == 16 and s.qthres == 0.04 and s.mode == "and-or"
    assert s.store_path is not None and s.store_path.name == "audits.sqlite"


def test_environment_variables(monkeypatch):
    monkeypatch.setenv("AUDITOR_SAMPLE_RATE", "0.2")
    monkeypatch.setenv("AUDITOR_N_PLAYERS", "4")
    monkeypatch.setenv("AUDITOR_LOW_CONFIDENCE_THRESHOLD", "none")
    monkeypatch.setenv("AUDITOR_AUTH_TOKEN", "s3cret")
    monkeypatch.setenv("AUDITOR_AUDITOR_DEVICE", "CUDA:1")
    monkeypatch.setenv("AUDITOR_FAULT", "hang")
    s = AuditorSettings()
    assert s.sample_rate == 0.2 and s.n_players == 4 and s.low_confidence_threshold is None
    assert s.auth_token_value() == "s3cret" and s.audit_device == "cuda:1" and s.device == "cpu"
    assert s.fault == "hang"
    public = s.public_dict()
    assert "auth_token" not in public and public["auth_required"] is True
    assert "s3cret" not in repr(s) and "s3cret" not in str(public)


def test_overrides_win_over_environment(monkeypatch):
    monkeypatch.setenv("AUDITOR_SAMPLE_RATE", "0.2")
    assert load_settings({"sample-rate": 1.0}).sample_rate == 1.0
    with pytest.raises(ValueError, match="unknown auditor setting.*smaple_rate"):
        load_settings({"smaple_rate": 1.0})


@pytest.mark.parametrize(
    ("env", "value", "field"),
    [
        ("AUDITOR_SAMPLE_RATE", "1.5", "sample_rate"),
        ("AUDITOR_N_PLAYERS", "17", "n_players"),
        ("AUDITOR_QUEUE_SIZE", "0", "queue_size"),
        ("AUDITOR_DEVICE", "gpu", "device"),
        ("AUDITOR_FAULT", "explode", "fault"),
        ("AUDITOR_MODEL_LABEL", "bad label with spaces", "model_label"),
        ("AUDITOR_REDACTION", "none", "redaction"),
        ("AUDITOR_AUDIT_TIMEOUT_S", "0", "audit_timeout_s"),
    ],
)
def test_invalid_values_name_the_setting(monkeypatch, env, value, field):
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError) as info:
        AuditorSettings()
    assert field in str(info.value)


def test_generation_limits_must_be_consistent():
    with pytest.raises(ValidationError, match="exceeds max_new_tokens_limit"):
        AuditorSettings(max_new_tokens=300, max_new_tokens_limit=256)


def test_model_labels_are_bounded_and_derived():
    assert derive_model_label("testbed:shortcut") == "testbed-shortcut"
    assert derive_model_label("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert derive_model_label("/models/my model/") == "my-model"
    assert len(derive_model_label("x" * 300)) == 64
    assert AuditorSettings(model="/srv/llm", model_label="prod-llm").metrics_model == "prod-llm"
    assert AuditorSettings(model="  ").model == DEFAULT_MODEL


def test_store_path_forms():
    assert str(AuditorSettings(store_url="sqlite:////var/lib/a.sqlite").store_path) == "/var/lib/a.sqlite"
    assert str(AuditorSettings(store_url="sqlite:///rel/a.sqlite").store_path) == "rel/a.sqlite"
    assert AuditorSettings(store_url="sqlite:///:memory:").store_path is None


def test_unknown_environment_variables_are_reported():
    env = {"AUDITOR_SAMPLE_RATE": "1", "AUDITOR_SMAPLE_RATE": "1", "PATH": "/bin"}
    assert unknown_env_vars(env) == ["AUDITOR_SMAPLE_RATE"]


def test_settings_are_immutable():
    s = AuditorSettings()
    with pytest.raises(ValidationError):
        s.sample_rate = 0.5  # type: ignore[misc]


def test_cpu_threads_split_the_cores():
    assert AuditorSettings().cpu_threads(2) == (1, 1)
    assert AuditorSettings().cpu_threads(16) == (8, 8)
    assert AuditorSettings().cpu_threads(1) == (1, 1)
    assert AuditorSettings(torch_threads=3).cpu_threads(16) == (3, 13)
    assert AuditorSettings(torch_threads=3, auditor_threads=2).cpu_threads(16) == (3, 2)
