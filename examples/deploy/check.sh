#!/usr/bin/env sh
# Checks the deployment examples beside this script with the validators that
# install from a package registry here (tests/deploy_examples.rs runs it):
#
# - kubernetes/: kubernetes-validate (PyPI; it ships the Kubernetes API
#   schemas), strict (unknown fields are errors), for Kubernetes 1.28 (the
#   first with the pod-index label) and 1.37;
# - systemd/: `systemd-analyze verify` of an instance, with ExecStart pointed
#   at /bin/true (the bot is not installed here); any warning fails;
# - nomad/: HCL syntax only (python-hcl2, PyPI): Nomad itself is in no
#   registry reachable here, so `nomad job validate` could not be run;
# - all three: SHARD_COUNT equals the number of replicas they start.
#
# The PyPI packages (requirements.txt, pinned) are installed into a virtual
# environment in $DEPLOY_CHECK_VENV (default: /tmp/grafolean-deploy-check) by
# tests/setup.sh, so that this script (and `cargo test`) needs no network;
# it only checks that they are there, at the pinned versions.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${DEPLOY_CHECK_VENV:-/tmp/grafolean-deploy-check}
if ! sh "$here/venv.sh" check "$venv"; then
  echo "examples/deploy/check.sh: the validators are not installed in $venv; run tests/setup.sh" >&2
  exit 1
fi

echo "== kubernetes"
for version in 1.28.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict -k "$version" "$here/kubernetes/grafolean-ping-bot.yaml"
done

echo "== systemd"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's|^ExecStart=/usr/local/bin/grafolean-ping-bot|ExecStart=/bin/true|' \
  "$here/systemd/grafolean-ping-bot@.service" >"$tmp/grafolean-ping-bot@.service"
out=$(cd "$tmp" && systemd-analyze verify --man=no ./grafolean-ping-bot@1.service 2>&1) || {
  echo "$out" >&2
  exit 1
}
if [ -n "$out" ]; then
  echo "systemd-analyze warned:" >&2
  echo "$out" >&2
  exit 1
fi
echo "systemd/grafolean-ping-bot@.service: ok"

echo "== nomad (syntax) and SHARD_COUNT"
"$venv/bin/python" - "$here" <<'PY'
import re, sys, pathlib
import hcl2, yaml

here = pathlib.Path(sys.argv[1])
unq = lambda s: s.strip('"') if isinstance(s, str) else s

job = hcl2.load(open(here / "nomad/grafolean-ping-bot.nomad.hcl"))
(name, body), = job["job"][0].items()
(group,) = [g for g in body["group"][0].values()]
(task,) = [t for t in group["task"][0].values()]
env = {k: unq(v) for k, v in task["env"][0].items() if not k.startswith("__")}
assert env["SHARD"] == "${NOMAD_ALLOC_INDEX}", env
assert int(env["SHARD_COUNT"]) == group["count"], (env, group["count"])
print(f"nomad/grafolean-ping-bot.nomad.hcl: ok ({group['count']} replicas)")

docs = [d for d in yaml.safe_load_all(open(here / "kubernetes/grafolean-ping-bot.yaml")) if d]
(sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
(container,) = sts["spec"]["template"]["spec"]["containers"]
kenv = {e["name"]: e for e in container["env"]}
assert int(kenv["SHARD_COUNT"]["value"]) == sts["spec"]["replicas"]
assert "pod-index" in kenv["SHARD"]["valueFrom"]["fieldRef"]["fieldPath"]
print(f"kubernetes/grafolean-ping-bot.yaml: SHARD_COUNT ok ({sts['spec']['replicas']} replicas)")

# A pod that runs as a non-root user reads a Secret volume (files owned by
# root) only through its group: fsGroup set, and the group allowed to read.
pod = sts["spec"]["template"]["spec"]
ctx = pod.get("securityContext", {})
for c in pod["containers"]:
    user = c.get("securityContext", {}).get("runAsUser", ctx.get("runAsUser"))
    if user in (None, 0):
        continue
    for v in pod.get("volumes", []):
        if "secret" not in v:
            continue
        assert "fsGroup" in ctx, f"container {c['name']} runs as {user}: secret volume {v['name']} needs fsGroup"
        mode = v["secret"].get("defaultMode", 0o644)
        assert mode & 0o040, f"secret volume {v['name']}: mode {mode:o} is not readable by the fsGroup"
print("kubernetes/grafolean-ping-bot.yaml: the non-root pod can read its token Secret (fsGroup)")

unit = (here / "systemd/grafolean-ping-bot@.service").read_text()
assert re.search(r"^Environment=SHARD=%i$", unit, re.M)
count = int(re.search(r"^Environment=SHARD_COUNT=(\d+)$", unit, re.M)[1])
enabled = re.search(r"systemctl enable --now((?: grafolean-ping-bot@\d+)+)", unit)[1].split()
assert len(enabled) == count, (enabled, count)
print(f"systemd/grafolean-ping-bot@.service: SHARD_COUNT ok ({count} replicas)")
PY
