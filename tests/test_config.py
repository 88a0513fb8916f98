import os
import stat

import pytest

from pocketsleep.config import Config, Paths, load_config
from pocketsleep.errors import ConfigError


def test_data_home_comes_from_environment(data_home):
    assert Paths.resolve().home == data_home.resolve()


def test_data_home_defaults_to_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("POCKETSLEEP_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Paths.resolve().home == (tmp_path / "xdg" / "pocketsleep").resolve()


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_data_home_variable_is_an_error_not_the_real_home(monkeypatch, tmp_path, value):
    monkeypatch.setenv("POCKETSLEEP_HOME", value)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with pytest.raises(ConfigError, match="POCKETSLEEP_HOME is set but empty"):
        Paths.resolve()
    assert not (tmp_path / "xdg").exists()


def test_ensure_creates_private_folder(data_home):
    Paths.resolve().ensure()
    assert stat.S_IMODE(data_home.stat().st_mode) == 0o700


def test_ensure_tightens_an_existing_open_folder(data_home):
    data_home.mkdir(mode=0o755)
    os.chmod(data_home, 0o755)
    Paths.resolve().ensure()
    assert stat.S_IMODE(data_home.stat().st_mode) == 0o700


def test_data_home_under_a_file_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("POCKETSLEEP_HOME", str(tmp_path / "afile" / "home"))
    with pytest.raises(ConfigError, match="POCKETSLEEP_HOME"):
        Paths.resolve().ensure()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_data_home_is_a_clear_error(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setenv("POCKETSLEEP_HOME", str(locked / "home"))
    with pytest.raises(ConfigError, match="permission denied"):
        Paths.resolve().ensure()


def test_config_defaults_without_file(paths):
    assert load_config(paths) == Config()
    assert Config().model == "default"


def test_config_reads_known_keys(paths):
    paths.config_file.write_text('model = "/models/x.gguf"\nengine = "mlx"\n')
    assert load_config(paths) == Config(model="/models/x.gguf", engine="mlx")


@pytest.mark.parametrize(
    "text, message",
    [
        ("model = ", "not valid TOML"),
        ('modle = "x"', "unknown setting 'modle'"),
        ("engine = 3", "'engine' must be a string, got 3"),
        ("keep_versions = true", "'keep_versions' must be an integer, got True"),
        # Values are checked when the file is read, not when first used (a negative
        # keep_versions was refused only at the morning merge, after a night).
        ('engine = "gpu"', "engine must be one of auto, mlx, llamacpp, got 'gpu'"),
        ('model = " "', "model must name a model"),
        ("keep_versions = -1", "keep_versions must be 0 or more, got -1"),
        ("nightly_window = 1", "nightly_window must be 2 or more, got 1"),
    ],
)
def test_bad_config_is_a_clear_error(paths, text, message):
    paths.config_file.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(paths)
