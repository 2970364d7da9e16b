#!/usr/bin/env bash
# Install the pinned environment into a virtualenv: `make setup` runs this.
#
#   scripts/install_env.sh .venv                      # uv, falling back to pip
#   MLINFRA_INSTALLER=pip scripts/install_env.sh .venv  # pip only
#
# uv (pinned in constraints.txt, from PyPI) resolves and installs the same pins as pip,
# several times faster: parallel downloads and a global cache it links from. It is
# taken from PATH when that is the pinned version, else installed into the venv with
# pip (one wheel). Any uv failure falls back to pip with the same files, so a machine
# where uv cannot run still gets the environment.
set -euo pipefail

VENV=${1:?usage: install_env.sh VENV}
BIN="$VENV/bin"
INSTALLER="${MLINFRA_INSTALLER:-uv}"
UV_VERSION="$(sed -n 's/^uv==//p' constraints.txt)"
REQS=(-r requirements.txt -r requirements-dev.txt -c constraints.txt)

with_pip() {
	"$BIN/python" -m pip install --quiet --upgrade "pip>=24" setuptools wheel
	"$BIN/python" -m pip install --quiet "${REQS[@]}"
	"$BIN/python" -m pip install --quiet --no-deps -e .
}

find_uv() {
	if command -v uv >/dev/null 2>&1 && [[ "$(uv --version 2>/dev/null | cut -d' ' -f2)" == "$UV_VERSION" ]]; then
		command -v uv
		return 0
	fi
	if [[ ! -x "$BIN/uv" ]] || [[ "$("$BIN/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
		"$BIN/python" -m pip install --quiet "uv==$UV_VERSION" >&2 || return 1
	fi
	echo "$BIN/uv"
}

# uv reads no pip configuration: hand it the indexes and wheel folders pip is configured
# with (pip.conf or PIP_*), so both install from the same sources.
pip_setting() {
	local env_name=$1 key=$2
	if [[ -n "${!env_name:-}" ]]; then
		echo "${!env_name}"
	else
		"$BIN/python" -m pip config get "global.$key" 2>/dev/null || true
	fi
}

with_uv() {
	local uv value
	uv="$(find_uv)" || return 1
	value="$(pip_setting PIP_INDEX_URL index-url)"
	[[ -n "$value" && -z "${UV_INDEX_URL:-}" ]] && export UV_INDEX_URL="$value"
	value="$(pip_setting PIP_EXTRA_INDEX_URL extra-index-url)"
	if [[ -n "$value" && -z "${UV_EXTRA_INDEX_URL:-}" ]]; then
		export UV_EXTRA_INDEX_URL="$value"
		# pip takes the best match over all its indexes; uv, by default, only the first
		# index that has a package at all, which misses pins found on the others.
		export UV_INDEX_STRATEGY="${UV_INDEX_STRATEGY:-unsafe-best-match}"
	fi
	value="$(pip_setting PIP_FIND_LINKS find-links)"
	[[ -n "$value" && -z "${UV_FIND_LINKS:-}" ]] && export UV_FIND_LINKS="${value// /,}"
	"$uv" pip install --quiet --python "$BIN/python" "${REQS[@]}" &&
		"$uv" pip install --quiet --python "$BIN/python" --no-deps -e .
}

started=$SECONDS
if [[ "$INSTALLER" == uv ]]; then
	if with_uv; then
		echo "setup: installed with uv $UV_VERSION in $((SECONDS - started))s"
		exit 0
	fi
	echo "setup: uv $UV_VERSION could not install the environment; falling back to pip" >&2
fi
with_pip
echo "setup: installed with pip in $((SECONDS - started))s"
