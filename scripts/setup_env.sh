#!/usr/bin/env bash
# Create or update the project venv: apt packages when missing, pinned pip packages, the project itself.
# Idempotent; `make` calls it only when requirements change. Usage: scripts/setup_env.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

# apt: EGL/Mesa for offscreen MuJoCo rendering (no GPU needed).
APT_PKGS=(libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libglib2.0-0)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing apt packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating venv $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
# The pip config of these machines adds file:// indexes that may be absent: hide that noise only.
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }
echo "[setup] installing pinned packages (first run ~90 s, ~2.6 GB incl. CPU torch)"
"$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt 2>&1 | quiet
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt 2>&1 | quiet
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1 | quiet
echo "[setup] venv ready in $(( $(date +%s) - start )) s: $VENV"
