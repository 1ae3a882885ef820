#!/usr/bin/env sh
# A virtual environment of pinned PyPI packages: by default examples/deploy/
# check.sh's validators (requirements.txt beside this script); the SNMP bot's
# differential tests use it for the Python bot's libraries too.
#
#   sh venv.sh check VENV [REQUIREMENTS]     exit 0 if VENV holds every pinned version
#   sh venv.sh install VENV [REQUIREMENTS]   create VENV and pip-install them, unless
#                                            `check` already passes (tests/setup.sh runs it)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
what=$1
venv=$2
requirements=${3:-$here/requirements.txt}
check() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - "$requirements" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(f"{name} is not installed")
    if have != want:
        sys.exit(f"{name} is {have}, not {want}")
PY
}
case $what in
  check) check ;;
  install)
    if check 2>/dev/null; then
      exit 0
    fi
    echo "examples/deploy/venv.sh: installing $requirements into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    check
    ;;
  *)
    echo "usage: venv.sh check|install VENV [REQUIREMENTS]" >&2
    exit 2
    ;;
esac
