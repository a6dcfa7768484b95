"""Configuration precedence: defaults < config file < SEGMENTS_* variables < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from transforms.config import load_settings
from transforms.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in (
        "CONFIG",
        "LANDING",
        "LAKE",
        "INBOX",
        "DEFINITIONS",
        "CONTRACTS",
        "VALIDATION_BATCH_ROWS",
        "SPARK_MASTER",
        "SPARK_REMOTE",
    ):
        monkeypatch.delenv(f"SEGMENTS_{name}", raising=False)
    monkeypatch.chdir(tmp_path)


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "segments.yaml"
    path.write_text(text)
    return path


def test_defaults_resolve_against_the_current_folder(tmp_path):
    settings = load_settings()
    assert settings.lake == str(tmp_path / "workspace" / "lake")
    assert settings.contracts == str(tmp_path / "data_contracts")


def test_config_file_paths_are_relative_to_the_file(tmp_path):
    path = write_config(tmp_path / "conf", "lake: data/lake\nlanding: s3://bucket/landing\n")
    settings = load_settings(path)
    assert settings.lake == str(tmp_path / "conf" / "data" / "lake")
    assert settings.landing == "s3://bucket/landing"


def test_the_config_file_in_the_current_folder_is_found(tmp_path):
    write_config(tmp_path, "inbox: drops\n")
    assert load_settings().inbox == str(tmp_path / "drops")


def test_environment_overrides_file_and_flags_override_environment(tmp_path, monkeypatch):
    path = write_config(tmp_path, "lake: from-file\nlanding: from-file\ninbox: from-file\n")
    monkeypatch.setenv("SEGMENTS_LAKE", "s3://env/lake")
    monkeypatch.setenv("SEGMENTS_LANDING", "s3://env/landing")
    settings = load_settings(path, landing="s3://flag/landing", inbox=None)
    assert settings.lake == "s3://env/lake"
    assert settings.landing == "s3://flag/landing"
    assert settings.inbox == str(tmp_path / "from-file")


def test_segments_config_variable_names_the_file(tmp_path, monkeypatch):
    path = write_config(tmp_path / "elsewhere", "lake: /abs/lake\n")
    monkeypatch.setenv("SEGMENTS_CONFIG", str(path))
    assert load_settings().lake == "/abs/lake"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lakee: x\n", "lakee"),
        ("validation_batch_rows: 0\n", "validation_batch_rows"),
        ("- a\n- b\n", "expected a mapping"),
        ("lake: [\n", "not valid YAML"),
    ],
)
def test_bad_config_is_refused_with_the_file_and_field(tmp_path, text, message):
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(path)
    assert str(path) in str(raised.value)


def test_a_named_config_file_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_spark_settings_follow_file_then_environment_then_flags(tmp_path, monkeypatch):
    assert load_settings().spark_master == "local[2]"
    assert load_settings().spark_remote is None
    assert load_settings().spark_s3a is False
    path = write_config(
        tmp_path,
        "spark_master: local[4]\nspark_conf: {spark.driver.memory: 2g}\nspark_s3a: true\n",
    )
    assert load_settings(path).spark_master == "local[4]"
    assert load_settings(path).spark_conf == {"spark.driver.memory": "2g"}
    assert load_settings(path).spark_s3a is True
    monkeypatch.setenv("SEGMENTS_SPARK_S3A", "false")
    assert load_settings(path).spark_s3a is False
    monkeypatch.setenv("SEGMENTS_SPARK_MASTER", "spark://cluster:7077")
    monkeypatch.setenv("SEGMENTS_SPARK_REMOTE", "sc://connect:15002")
    assert load_settings(path).spark_master == "spark://cluster:7077"
    assert load_settings(path).spark_remote == "sc://connect:15002"
    flagged = load_settings(path, spark_master="local[1]", spark_remote="sc://other:15002")
    assert (flagged.spark_master, flagged.spark_remote) == ("local[1]", "sc://other:15002")
