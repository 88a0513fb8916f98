#!/usr/bin/env bash
# Provide an optimised BLAS for MLX's CPU path on Linux (see backends/cpu_blas_provide.py;
# backends/cpu_blas.py loads it at start).
#
#   bash install_blas.sh [PYTHON]
#   source install_blas.sh && pocketsleep_install_blas [PYTHON]
#
# PYTHON is the environment's interpreter (default: $PYTHON, else python3); the
# library goes into <its sys.prefix>/lib/pocketsleep-blas/ (or $POCKETSLEEP_BLAS_DIR)
# and pocketsleep picks it up at start. Idempotent: nothing is done when a usable
# library is already there. It never fails the caller: if no library can be had it
# prints a warning (MLX then runs on the slow reference BLAS) and returns 0.
#
# Order: 1. already usable (provided before, or a system OpenBLAS/MKL): done;
# 2. without root: OpenBLAS from PyPI's scipy-openblas32 + a shim built with cc
#    (or, with no compiler on x86_64, PyPI's ngsolve-openblas);
# 3. as root, or with password-less sudo: the system package (apt-get
#    libopenblas0-pthread, dnf openblas-threads, pacman openblas); skipped when
#    POCKETSLEEP_BLAS_NO_SYSTEM=1.

pocketsleep_install_blas() {
    local py="${1:-${PYTHON:-python3}}"
    local here helper sudo=""
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    helper="$here/backends/cpu_blas_provide.py"

    [ "$(uname -s)" = "Linux" ] || return 0
    case "${POCKETSLEEP_BLAS:-}" in
        off|OFF|0|no|false|none)
            echo "pocketsleep: fast BLAS: skipped (POCKETSLEEP_BLAS=${POCKETSLEEP_BLAS})"
            return 0 ;;
    esac
    if ! command -v "$py" >/dev/null 2>&1 || [ ! -f "$helper" ]; then
        echo "pocketsleep: WARNING: fast BLAS not installed ($py or $helper missing);" \
             "MLX on CPU will be slow" >&2
        return 0
    fi

    # 1 + 2: no root needed.
    if "$py" "$helper" --install; then
        return 0
    fi

    # 3: the system package manager, only where that needs no password prompt.
    if [ -n "${POCKETSLEEP_BLAS_NO_SYSTEM:-}" ]; then
        echo "pocketsleep: WARNING: no optimised BLAS could be installed, so MLX on CPU" \
             "will be slow (about 20x); see the message above." >&2
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
            sudo="sudo -n"
        else
            echo "pocketsleep: WARNING: no optimised BLAS could be installed, so MLX on CPU" \
                 "will be slow (about 20x); see the message above. Fixes: install a C" \
                 "compiler (e.g. gcc) and re-run install_blas.sh, or have an administrator" \
                 "install the system OpenBLAS (Debian/Ubuntu: libopenblas0-pthread)." >&2
            return 0
        fi
    fi
    echo "pocketsleep: fast BLAS: trying the system package manager"
    if command -v apt-get >/dev/null 2>&1; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                -o DPkg::Lock::Timeout=120 libopenblas0-pthread >/dev/null 2>&1 ||
            { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 &&
              $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                -o DPkg::Lock::Timeout=120 libopenblas0-pthread >/dev/null 2>&1; } || true
    elif command -v dnf >/dev/null 2>&1; then
        $sudo dnf install -y -q openblas-threads >/dev/null 2>&1 || true
    elif command -v pacman >/dev/null 2>&1; then
        $sudo pacman -S --needed --noconfirm openblas >/dev/null 2>&1 || true
    fi
    if ! "$py" "$helper" --check; then
        echo "pocketsleep: WARNING: no optimised BLAS could be installed, so MLX on CPU" \
             "will be slow (about 20x). See the messages above." >&2
    fi
    return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    pocketsleep_install_blas "$@"
    exit 0
fi
