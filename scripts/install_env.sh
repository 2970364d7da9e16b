#!/usr/bin/env bash
# Install the pinned environment into a virtualenv: `make setup` runs this.
#
#   scripts/install_env.sh .venv                        # uv, falling back to pip
#   MLINFRA_INSTALLER=pip scripts/install_env.sh .venv  # pip only
#   MLINFRA_SHARED_ENV=0 scripts/install_env.sh .venv   # everything inside .venv itself
#
# The pinned dependencies are installed once per set of pins, into a shared environment
# under ~/.cache/mlinfra/envs/<hash of the pin files and the interpreter>, and compiled
# there once (scripts/compile_startup.py). A checkout's .venv is then a thin virtualenv
# on top: a .pth file puts the shared site-packages on its path, its bin/ holds the
# shared console scripts re-pointed at its own python, and this checkout is installed
# in it (editable). A second clone with the same pins is set up in a second or two
# instead of a full install and compile: the role pre-commit's or tox's environment
# caches play. pip refuses to uninstall a package of the shared environment from a
# checkout's venv ("outside environment"), so a `pip install` in .venv never alters it.
# A venv that already exists as a full one (made before this layout, or with
# MLINFRA_SHARED_ENV=0) is installed into as before.
#
# uv (pinned in constraints.txt, from PyPI) resolves and installs the same pins as pip,
# several times faster: parallel downloads and a global cache it links from. It is
# taken from PATH when that is the pinned version, else installed into the venv with
# pip (one wheel). Any uv failure falls back to pip with the same files, so a machine
# where uv cannot run still gets the environment.
set -euo pipefail

VENV=${1:?usage: install_env.sh VENV}
PYTHON=${PYTHON:-python3.11}
INSTALLER="${MLINFRA_INSTALLER:-uv}"
UV_VERSION="$(sed -n 's/^uv==//p' constraints.txt)"
REQS=(-r requirements.txt -r requirements-dev.txt -c constraints.txt)
MARKER=.mlinfra-shared-env
SCRIPTS="$(cd "$(dirname "$0")" && pwd)"

with_pip() {
	local bin=$1/bin
	"$bin/python" -m pip install --quiet --upgrade "pip>=24" setuptools wheel
	"$bin/python" -m pip install --quiet "${REQS[@]}"
}

find_uv() {
	local bin=$1/bin
	if command -v uv >/dev/null 2>&1 && [[ "$(uv --version 2>/dev/null | cut -d' ' -f2)" == "$UV_VERSION" ]]; then
		command -v uv
		return 0
	fi
	if [[ ! -x "$bin/uv" ]] || [[ "$("$bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
		"$bin/python" -m pip install --quiet "uv==$UV_VERSION" >&2 || return 1
	fi
	echo "$bin/uv"
}

# uv reads no pip configuration: hand it the indexes and wheel folders pip is configured
# with (pip.conf or PIP_*), so both install from the same sources.
pip_setting() {
	local python=$1 env_name=$2 key=$3
	if [[ -n "${!env_name:-}" ]]; then
		echo "${!env_name}"
	else
		"$python" -m pip config get "global.$key" 2>/dev/null || true
	fi
}

uv_env() {
	local python=$1 value
	value="$(pip_setting "$python" PIP_INDEX_URL index-url)"
	[[ -n "$value" && -z "${UV_INDEX_URL:-}" ]] && export UV_INDEX_URL="$value"
	value="$(pip_setting "$python" PIP_EXTRA_INDEX_URL extra-index-url)"
	if [[ -n "$value" && -z "${UV_EXTRA_INDEX_URL:-}" ]]; then
		export UV_EXTRA_INDEX_URL="$value"
		# pip takes the best match over all its indexes; uv, by default, only the first
		# index that has a package at all, which misses pins found on the others.
		export UV_INDEX_STRATEGY="${UV_INDEX_STRATEGY:-unsafe-best-match}"
	fi
	value="$(pip_setting "$python" PIP_FIND_LINKS find-links)"
	[[ -n "$value" && -z "${UV_FIND_LINKS:-}" ]] && export UV_FIND_LINKS="${value// /,}"
	return 0
}

with_uv() {
	local env=$1 uv
	uv="$(find_uv "$env")" || return 1
	uv_env "$env/bin/python"
	"$uv" pip install --quiet --python "$env/bin/python" "${REQS[@]}"
}

# The pinned dependencies into the full virtualenv $1 (created if missing).
install_deps() {
	local env=$1 started=$SECONDS
	[[ -x "$env/bin/python" ]] || "$PYTHON" -m venv "$env"
	if [[ "$INSTALLER" == uv ]]; then
		if with_uv "$env"; then
			echo "setup: installed with uv $UV_VERSION in $((SECONDS - started))s"
			return 0
		fi
		echo "setup: uv $UV_VERSION could not install the environment; falling back to pip" >&2
	fi
	with_pip "$env"
	echo "setup: installed with pip in $((SECONDS - started))s"
}

# This checkout, editable and without dependencies (they are the pins), into $1: uv when it
# is at hand, else pip (in a thin venv, the shared environment's, through the .pth). First
# without build isolation, since the build backend is one of the pins (seconds saved);
# isolated if that fails (an environment without that backend).
install_checkout() {
	local env=$1 uv=${2:-} isolation
	for isolation in --no-build-isolation ""; do
		if [[ "$INSTALLER" == uv && -n "$uv" && -x "$uv" ]]; then
			"$uv" pip install --quiet --python "$env/bin/python" --no-deps $isolation -e . 2>/dev/null && return 0
		fi
		# PATH: without build isolation, the backend (uv_build) runs the env's own uv-build.
		PATH="$env/bin:$PATH" "$env/bin/python" -m pip install --quiet --no-deps $isolation -e . 2>/dev/null &&
			return 0
	done
	echo "setup: could not install this checkout into $env" >&2
	PATH="$env/bin:$PATH" "$env/bin/python" -m pip install --no-deps -e .
}

# Everything inside $1 itself: the layout before shared environments, and MLINFRA_SHARED_ENV=0.
install_full() {
	install_deps "$1"
	install_checkout "$1" "$1/bin/uv"
	"$1/bin/python" "$SCRIPTS/compile_startup.py"
}

shared_env_path() {
	local key
	key="$(
		{
			cat requirements.txt requirements-dev.txt constraints.txt
			"$PYTHON" -c 'import sys, platform; print(sys.version, platform.machine(), sys.abiflags)'
			echo "layout 1"
		} | sha256sum | cut -c1-16
	)"
	echo "${MLINFRA_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlinfra/envs}/$key"
}

# The shared environment for these pins, built once: under a lock, at its final path (a
# virtualenv cannot be moved), and marked complete only at the end, so an interrupted
# build is started again rather than used.
build_shared() {
	local shared=$1
	mkdir -p "$(dirname "$shared")"
	exec 9>"$shared.lock"
	flock 9
	if [[ ! -f "$shared/.complete" ]]; then
		echo "setup: building the shared environment $shared (once for these pins)"
		rm -rf "$shared"
		install_deps "$shared"
		"$shared/bin/python" "$SCRIPTS/compile_startup.py"
		touch "$shared/.complete"
	fi
	flock -u 9
	exec 9>&-
}

# $1: the checkout's thin venv on top of the shared environment $2.
link_venv() {
	local venv=$1 shared=$2 started=$SECONDS site shared_site
	venv="$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")"
	if [[ ! -x "$venv/bin/python" ]]; then
		"$PYTHON" -m venv --without-pip "$venv"
		echo "$shared" >"$venv/$MARKER" # first: a half-made venv is still known as a thin one
	fi
	site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	shared_site="$("$shared/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	# addsitedir, not a bare path: the shared site-packages' own .pth files apply too.
	"$venv/bin/python" -c 'import sys; print(f"import site; site.addsitedir({sys.argv[1]!r})")' \
		"$shared_site" >"$site/_mlinfra_shared_env.pth"
	# Console scripts: the same, run by this venv's python; native programs (ruff, uv,
	# uv-build) linked. One python rather than a few processes per script (77 of them).
	"$venv/bin/python" - "$shared/bin" "$venv/bin" <<-'PY'
		import sys
		from pathlib import Path

		shared, own = Path(sys.argv[1]), Path(sys.argv[2])
		shebang = f"#!{shared}/python".encode()
		for path in sorted(shared.iterdir()):
		    name = path.name
		    if name.startswith(("python", "activate", "Activate")) or name == "mlinfra":
		        continue
		    target = own / name
		    target.unlink(missing_ok=True)
		    with path.open("rb") as f:
		        first = f.readline()
		        if first.startswith(shebang):
		            target.write_bytes(f"#!{own}/python\n".encode() + f.read())
		            target.chmod(0o755)
		            continue
		    target.symlink_to(path)
	PY
	install_checkout "$venv" "$shared/bin/uv"
	echo "$shared" >"$venv/$MARKER"
	# This checkout's own modules, compiled too (the processes import them at start-up).
	local own=()
	for d in plugins dags; do [[ -d "$d" ]] && own+=("$d"); done
	[[ ${#own[@]} -eq 0 ]] || "$venv/bin/python" -m compileall -q -j 0 "${own[@]}" >/dev/null || true
	echo "setup: $venv uses the shared environment $shared (linked in $((SECONDS - started))s)"
}

started=$SECONDS
if [[ "${MLINFRA_SHARED_ENV:-1}" == 0 ]] || { [[ -x "$VENV/bin/python" ]] && [[ ! -f "$VENV/$MARKER" ]]; }; then
	install_full "$VENV"
else
	SHARED="$(shared_env_path)"
	build_shared "$SHARED"
	link_venv "$VENV" "$SHARED"
fi
echo "setup: done in $((SECONDS - started))s"
