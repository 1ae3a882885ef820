//! The deployment examples under `examples/deploy/` (systemd, Kubernetes,
//! Nomad) pass the validators that install here: `examples/deploy/check.sh`
//! (the Kubernetes API schemas, strict; `systemd-analyze verify`; the Nomad
//! job's HCL syntax; SHARD_COUNT equal to the replicas each starts; a
//! non-root pod able to read its token Secret). The validators come from
//! PyPI, installed by `tests/setup.sh`: this test needs no network.

use std::process::Command;

#[test]
fn deployment_examples_validate() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/deploy/check.sh");
    let out = Command::new("sh")
        .arg(script)
        .output()
        .expect("sh runs examples/deploy/check.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "examples/deploy/check.sh failed:\n{text}"
    );
    for what in [
        "passed for resource statefulset/grafolean-ping-bot against version 1.28",
        "passed for resource statefulset/grafolean-ping-bot against version 1.37",
        "systemd/grafolean-ping-bot@.service: ok",
        "nomad/grafolean-ping-bot.nomad.hcl: ok",
        "the non-root pod can read its token Secret (fsGroup)",
    ] {
        assert!(text.contains(what), "missing {what:?} in:\n{text}");
    }
}
