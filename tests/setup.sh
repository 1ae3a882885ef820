#!/usr/bin/env sh
# Installs what the tests need on a fresh Debian machine, as root: Debian's
# prometheus (a real Prometheus scrapes /metrics), chromium (the status page in
# a real browser), iproute2, util-linux and procps (network namespaces, sysctl
# for the ICMP tests), snmpd and snmp (a real SNMP agent for the SNMP bot), softflowd, nfdump and pmacct (real NetFlow
# and sFlow for the NetFlow bot, and the reference collectors), python3-venv and systemd (examples/deploy/check.sh: a
# virtual environment for its PyPI validators, systemd-analyze); then those
# validators, pinned (examples/deploy/requirements.txt), into that virtual
# environment, so that the tests themselves need no network. Installs
# nothing that is already there. The README's
# test command runs it first; .ci/run runs that same command.
set -eu
need=""
command -v prometheus >/dev/null 2>&1 || need="$need prometheus"
[ -x /usr/bin/chromium ] || need="$need chromium"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v unshare >/dev/null 2>&1 || need="$need util-linux"
command -v sysctl >/dev/null 2>&1 || need="$need procps"
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need="$need python3-venv"
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
# The SNMP bot's tests run a real agent (snmpd) and use snmpget to see it is up.
[ -x /usr/sbin/snmpd ] || need="$need snmpd"
command -v snmpget >/dev/null 2>&1 || need="$need snmp"
# The NetFlow bot's tests export real NetFlow with softflowd and check the
# bot's windows against nfcapd/nfdump's.
command -v softflowd >/dev/null 2>&1 || need="$need softflowd"
command -v nfcapd >/dev/null 2>&1 || need="$need nfdump"
# ... and sFlow with pmacct's pmacctd (sfprobe), checked against its sfacctd.
command -v sfacctd >/dev/null 2>&1 || need="$need pmacct"
if [ -n "$need" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "tests/setup.sh: the tests need:$need; run as root (or install them with apt-get)" >&2
    exit 1
  fi
  echo "tests/setup.sh: installing$need" >&2
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# The validators of the deployment examples (PyPI, pinned in
# examples/deploy/requirements.txt) go into a virtual environment now, so
# that `cargo test` needs no network: nothing is installed when the pinned
# versions are already there.
sh "$(dirname "$0")/../examples/deploy/venv.sh" install "${DEPLOY_CHECK_VENV:-/tmp/grafolean-deploy-check}"
# Likewise the Python SNMP bot's own libraries (mathjspy, python-slugify), at
# its pinned versions, for the SNMP bot's differential tests.
sh "$(dirname "$0")/../examples/deploy/venv.sh" install "${SNMP_PARITY_VENV:-/tmp/grafolean-snmp-parity}" \
  "$(dirname "$0")/../bots/snmp/tests/python/requirements.txt"
