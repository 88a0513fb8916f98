"""MLX's compiled CPU kernels go where only this user can write (backends/kernel_cache.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from pocketsleep.backends.kernel_cache import secure_kernel_cache


def env_for(tmp_path) -> dict:
    (tmp_path / "t").mkdir(exist_ok=True)
    return {"TMPDIR": str(tmp_path / "t"), "XDG_CACHE_HOME": str(tmp_path / "cache")}


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_missing_folder_is_created_for_this_user_alone(tmp_path):
    env = env_for(tmp_path)
    said = secure_kernel_cache(env)
    assert "alone" in said and mode(tmp_path / "t" / "mlx") == 0o700
    assert env["TMPDIR"] == str(tmp_path / "t")  # nothing redirected


def test_this_users_own_folder_is_kept_and_closed(tmp_path):
    env = env_for(tmp_path)
    (tmp_path / "t" / "mlx").mkdir(mode=0o755)
    assert "this user's" in secure_kernel_cache(env)
    assert env["TMPDIR"] == str(tmp_path / "t")
    # MLX makes its subfolders with the umask's modes: closing the top keeps others out.
    assert mode(tmp_path / "t" / "mlx") == 0o700


def test_an_empty_tmpdir_gets_a_private_folder(tmp_path):
    # MLX takes a set-but-empty TMPDIR as it is, and then cannot compile at all.
    env = {"TMPDIR": "", "TMP": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    secure_kernel_cache(env)
    assert env["TMPDIR"] == str(tmp_path / "cache" / "pocketsleep" / "tmp")


def test_python_temporary_files_stay_where_they_were(tmp_path, monkeypatch):
    import tempfile

    for var, value in env_for(tmp_path).items():  # the real environment (restored after)
        monkeypatch.setenv(var, value)
    (tmp_path / "t" / "mlx").mkdir()
    (tmp_path / "t" / "mlx").chmod(0o777)
    monkeypatch.setattr(tempfile, "tempdir", None)  # not yet worked out in this process
    secure_kernel_cache()
    assert os.environ["TMPDIR"] == str(tmp_path / "cache" / "pocketsleep" / "tmp")
    assert tempfile.gettempdir() == str(tmp_path / "t")


@pytest.mark.parametrize("unsafe", ["world-writable", "group-writable", "a link"])
def test_a_folder_others_can_write_sends_mlx_to_a_private_one(tmp_path, unsafe):
    env = env_for(tmp_path)
    shared = tmp_path / "t" / "mlx"
    if unsafe == "a link":
        (tmp_path / "elsewhere").mkdir()
        shared.symlink_to(tmp_path / "elsewhere")
    else:
        shared.mkdir()
        shared.chmod(0o777 if unsafe == "world-writable" else 0o775)
    said = secure_kernel_cache(env)
    private = tmp_path / "cache" / "pocketsleep" / "tmp"
    assert env["TMPDIR"] == str(private), said
    assert mode(private) == 0o700


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_another_user_made_first_is_not_used(tmp_path):
    env = env_for(tmp_path)
    theirs = tmp_path / "t" / "mlx"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)  # nobody
    secure_kernel_cache(env)
    assert env["TMPDIR"] == str(tmp_path / "cache" / "pocketsleep" / "tmp")


def test_mlx_compiles_its_kernels_into_the_private_folder(tmp_path):
    """The real thing: a planted, world-writable <temp>/mlx gets no kernel."""
    pytest.importorskip("mlx.core")
    env = {**os.environ, **env_for(tmp_path)}
    planted = tmp_path / "t" / "mlx"
    planted.mkdir()
    planted.chmod(0o777)
    code = textwrap.dedent("""
        import pocketsleep.backends  # noqa: F401  (before mlx, as every MLX module does)
        import mlx.core as mx
        f = mx.compile(lambda x, y: mx.exp(x * 3.0 + y) - 1.5)
        mx.eval(f(mx.ones((64,)), mx.ones((64,))))
    """)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    private = tmp_path / "cache" / "pocketsleep" / "tmp" / "mlx"
    assert list(private.rglob("*.so")), "MLX compiled nothing into the private folder"
    assert list(planted.iterdir()) == []
