# Sourced by scripts/test and scripts/lambda-watch: makes .venv hold the Python tools pinned in
# scripts/requirements-dev.txt (moto, cargo-lambda, SAM CLI, cfn-lint), installing only
# when the pins changed or a tool is missing.
#
# Needs: $python (an interpreter, 3.11+), $venv (the venv's path). Sets VENV_STATE to
# `installed` or `cached`. Returns non-zero with a message on stderr when it cannot.

# The installer of the pins below (https://pypi.org/project/uv/).
UV_VERSION=0.13.9

ensure_venv() {
  local requirements="scripts/requirements-dev.txt"
  local stamp="$venv/.requirements.sha256"

  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "$python is missing or older than 3.11; install Python 3.11+ or set PYTHON" >&2
    return 1
  fi
  # A venv whose pip does not run (Python upgraded or moved, or a creation that failed
  # half-way because the venv module is missing) is rebuilt, not patched.
  if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    if ! "$python" -m venv "$venv"; then
      rm -rf "$venv"
      echo "cannot create $venv; on Debian or Ubuntu, install python3-venv" >&2
      return 1
    fi
  fi

  local wanted installed tools_present=true tool
  wanted="$("$venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$requirements")"
  installed="$(cat "$stamp" 2>/dev/null || true)"
  for tool in moto_server cfn-lint sam cargo-lambda; do
    [[ -x "$venv/bin/$tool" ]] || tools_present=false
  done
  if [[ "$wanted" == "$installed" && "$tools_present" == true ]]; then
    VENV_STATE=cached
    return 0
  fi
  echo "installing $requirements into $venv" >&2
  rm -f "$stamp"
  # Through uv, pinned here, when PyPI has it for this machine: it resolves, downloads and
  # unpacks in parallel and leaves byte-compiling to first use (23 s instead of pip's 63 s
  # on 2 cores, from nothing cached). pip installs the same pins if uv cannot be had.
  if PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$venv/bin/python" -m pip install --quiet "uv==$UV_VERSION" 2>/dev/null; then
    "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" -r "$requirements" || return 1
  else
    echo "uv $UV_VERSION is not available here; installing with pip" >&2
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
      "$venv/bin/python" -m pip install --quiet -r "$requirements" || return 1
  fi
  echo "$wanted" >"$stamp"
  VENV_STATE=installed
}
