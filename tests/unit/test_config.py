"""Config validation: clear messages naming the key, environment overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from botkit.cli import _load
from botkit.config import Config, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_config_is_valid_and_matches_the_defaults() -> None:
    example = load_config(Path(__file__).resolve().parents[2] / "config.example.toml")
    assert example.defaults == load_config(None).defaults
    assert example.plugins.enabled == ["dice", "summarize"]


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"defaults\.temprature: Extra inputs are not permitted"):
        load_config(write(tmp_path, "[defaults]\ntemprature = 0.5\n"))


def test_default_backend_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"defaults\.backend = 'big' is not a configured backend"):
        load_config(write(tmp_path, '[defaults]\nbackend = "big"\n'))


def test_max_tokens_must_leave_room_in_the_window(tmp_path: Path) -> None:
    text = "[backends.local]\nn_ctx = 512\n[defaults]\nmax_tokens = 300\n"
    with pytest.raises(ConfigError, match="keep it below 256"):
        load_config(write(tmp_path, text))


def test_broken_toml_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(write(tmp_path, "[defaults\n"))


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTKIT_STORAGE__URL", "sqlite+aiosqlite:///elsewhere.db")
    config = load_config(write(tmp_path, '[storage]\nurl = "sqlite+aiosqlite:///file.db"\n'))
    assert config.storage.url == "sqlite+aiosqlite:///elsewhere.db"


def test_parallel_needs_a_batch_that_holds_every_chat() -> None:
    with pytest.raises(ValidationError, match="parallel = 16 needs n_batch of at least 32"):
        Config(backends={"local": {"parallel": 16, "n_batch": 16}})


def test_default_examples_and_lora_scale_are_checked(tmp_path: Path) -> None:
    text = '[defaults]\nexamples = [["I loved this movie!", "Positive"]]\n'
    assert load_config(write(tmp_path, text)).defaults.examples == (
        ("I loved this movie!", "Positive"),
    )
    nine = "[defaults]\nexamples = [" + ", ".join(['["a", "b"]'] * 9) + "]\n"
    with pytest.raises(ConfigError, match=r"defaults\.examples: Tuple should have at most 8"):
        load_config(write(tmp_path, nine))
    with pytest.raises(ConfigError, match=r"lora_scale: Input should be less than or equal to 4"):
        load_config(write(tmp_path, "[backends.local]\nlora_scale = 5\n"))


def test_parallel_is_auto_unless_set() -> None:
    assert Config().backends["local"].parallel == "auto"
    assert Config(backends={"local": {"parallel": 3}}).backends["local"].parallel == 3
    with pytest.raises(ValidationError, match="parallel"):
        Config(backends={"local": {"parallel": "many"}})


def test_each_config_file_is_its_own_instance_and_chat_apart_from_run(tmp_path: Path) -> None:
    first, second = tmp_path / "bot-0.toml", tmp_path / "bot-1.toml"
    for path in (first, second):
        path.write_text("[console]\nenabled = false\n", encoding="utf-8")
    run = [_load(argparse.Namespace(config=p, command="run"))[0] for p in (first, second)]
    names = [c.service.instance for c in run]
    assert names[0] != names[1]
    assert names[0] == _load(argparse.Namespace(config=first, command="run"))[0].service.instance
    chat = _load(argparse.Namespace(config=first, command="chat"))[0].service.instance
    assert chat not in names
    first.write_text('[service]\ninstance = "bot-a"\n', encoding="utf-8")
    assert _load(argparse.Namespace(config=first, command="run"))[0].service.instance == "bot-a"


def test_the_heartbeat_timeout_must_outlast_two_heartbeats(tmp_path: Path) -> None:
    text = "[service]\nheartbeat_interval = 10\nheartbeat_timeout = 15\n"
    with pytest.raises(ConfigError, match=r"heartbeat_timeout \(15 s\) must be at least twice"):
        load_config(write(tmp_path, text))
