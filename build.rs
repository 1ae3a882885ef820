//! Build facts for `grafolean_bot_build_info`: the rustc version and, when
//! built from a git checkout, the commit (`unknown` otherwise, as from a
//! crates.io package). Both may be set from outside instead, for builds
//! without git: `GRAFOLEAN_BUILD_REVISION` and `GRAFOLEAN_BUILD_RUSTC`.

use std::path::Path;
use std::process::Command;

fn output(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").map_or_else(|_| ".".into(), std::path::PathBuf::from);
    println!("cargo:rerun-if-env-changed=GRAFOLEAN_BUILD_REVISION");
    println!("cargo:rerun-if-env-changed=GRAFOLEAN_BUILD_RUSTC");
    let revision = std::env::var("GRAFOLEAN_BUILD_REVISION")
        .ok()
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"], &dir))
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = std::env::var("GRAFOLEAN_BUILD_RUSTC")
        .ok()
        .or_else(|| {
            // "rustc 1.95.0 (59807616e 2026-…)" → "1.95.0"
            output(&rustc, &["--version"], &dir)
                .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GRAFOLEAN_BUILD_REVISION={revision}");
    println!("cargo:rustc-env=GRAFOLEAN_BUILD_RUSTC={rustc_version}");
    // A new commit changes HEAD (a branch's ref, or HEAD itself when detached).
    if let Some(git) = output("git", &["rev-parse", "--absolute-git-dir"], &dir) {
        let git = Path::new(&git);
        for file in ["HEAD", "packed-refs"] {
            if git.join(file).exists() {
                println!("cargo:rerun-if-changed={}", git.join(file).display());
            }
        }
        if let Some(head) = output("git", &["symbolic-ref", "-q", "HEAD"], &dir) {
            let r = git.join(head);
            if r.exists() {
                println!("cargo:rerun-if-changed={}", r.display());
            }
        }
    } else {
        println!("cargo:rerun-if-changed=build.rs");
    }
}
