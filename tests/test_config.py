from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from appliance.cli import main
from appliance.config import Config, load_config, parse_config
from appliance.errors import ApplianceError, ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    return path


def test_defaults_run_on_a_laptop() -> None:
    config = load_config(None)
    assert config.inference.accelerator == "auto"
    # Half the cores this process may use: two pipeline stages run at once.
    assert config.inference.num_threads == max(1, len(os.sched_getaffinity(0)) // 2)
    assert config.session.idle_timeout_s == 600
    assert config.session.max_lifetime_s == 3600


def test_full_file_round_trip(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
state_dir = "/var/lib/appliance"
[inference]
accelerator = "external:/usr/lib/libfoo.so"
num_threads = 4
[session]
idle_timeout_s = 300
""",
    )
    config = load_config(path)
    assert config.inference.accelerator == "external:/usr/lib/libfoo.so"
    assert config.inference.num_threads == 4
    assert config.session.idle_timeout_s == 300
    assert str(config.state_dir) == "/var/lib/appliance"


def test_unknown_key_names_its_path_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, '[inference]\nacelerator = "cpu"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (issue,) = info.value.issues
    assert issue.path == "inference.acelerator"
    assert "unknown key" in issue.message
    assert "did you mean 'accelerator'" in issue.message


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[camra]\nbackend = 'fake'\n"))
    assert info.value.issues[0].path == "camra"


def test_wrong_type_and_bad_value_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[inference]\nnum_threads = "four"\naccelerator = "tpu"\n[web]\nport = 70000\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    paths = {issue.path for issue in info.value.issues}
    assert paths == {"inference.num_threads", "inference.accelerator", "web.port"}
    assert isinstance(info.value, ValueError) and isinstance(info.value, ApplianceError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[inference\n"))


def test_retention_can_only_go_down() -> None:
    parse_config({"session": {"idle_timeout_s": 120}})
    with pytest.raises(ConfigError) as info:
        parse_config({"session": {"idle_timeout_s": 86400}})
    assert info.value.issues[0].path == "session.idle_timeout_s"


def test_config_is_immutable() -> None:
    config = Config()
    with pytest.raises(ValueError, match="frozen"):
        config.inference.num_threads = 8  # type: ignore[misc]


def test_validate_config_cli_prints_key_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[inference]\nnum_threads = 0\nbogus = 1\n")
    assert main(["--validate-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "inference.num_threads" in err
    assert "inference.bogus: unknown key" in err
    good = write(tmp_path, "[inference]\nnum_threads = 2\n")
    assert main(["--validate-config", str(good)]) == 0


def test_validate_config_console_script(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nport = 'x'\n")
    result = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--validate-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "web.port" in result.stderr
    assert "Traceback" not in result.stderr


def test_example_config_in_docs_is_valid_and_complete() -> None:
    example = Path(__file__).resolve().parent.parent / "docs" / "config.example.toml"
    config = load_config(example)
    text = example.read_text()
    for section, model in config:
        if isinstance(model, BaseModel):
            for key in type(model).model_fields:
                assert f"{key} =" in text, f"{section}.{key} is not documented"


def test_session_budget_is_a_quarter_and_reserve_one_product() -> None:
    session = load_config(None).session
    assert session.workspace_max_bytes == 512 << 20
    assert session.session_budget == 128 << 20  # well below the whole workspace
    assert session.session_reserve == 48 << 20  # a 40 MiB upload and its product
    small = parse_config({"session": {"workspace_max_bytes": 32 << 20}}).session
    assert (small.session_budget, small.session_reserve) == (8 << 20, 8 << 20)
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"session": {"session_max_bytes": 64 << 20, "session_reserve_bytes": 65 << 20}}
        )
    assert "session_reserve_bytes" in str(caught.value) and "session" in str(caught.value)
    with pytest.raises(ConfigError, match="session_max_bytes"):
        parse_config({"session": {"workspace_max_bytes": 32 << 20, "session_max_bytes": 33 << 20}})


def test_default_workspace_follows_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    one = Config(state_dir=tmp_path / "one")
    two = Config(state_dir=tmp_path / "two")
    assert one.workspace_dir.parent == two.workspace_dir.parent == tmp_path / "run"
    assert one.workspace_dir != two.workspace_dir
    # --state-dir is applied with model_copy after loading: the workspace follows it too.
    assert one.model_copy(update={"state_dir": tmp_path / "two"}).workspace_dir == two.workspace_dir
    assert Config(state_dir=tmp_path / "one").workspace_dir == one.workspace_dir  # stable
    explicit = parse_config({"session": {"workspace_dir": "/run/appliance/workspace"}})
    assert explicit.workspace_dir == Path("/run/appliance/workspace")
