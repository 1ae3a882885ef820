//! The Python SNMP bot's own libraries, for differential tests: they run in
//! the virtual environment tests/setup.sh makes ($SNMP_PARITY_VENV, by
//! default /tmp/grafolean-snmp-parity) from tests/python/requirements.txt.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The virtual environment's interpreter, or `None` (with a loud SKIPPED
/// line) when the environment is not there.
pub fn interpreter() -> Option<PathBuf> {
    let venv = std::env::var("SNMP_PARITY_VENV")
        .unwrap_or_else(|_| "/tmp/grafolean-snmp-parity".to_string());
    let python = PathBuf::from(&venv).join("bin/python");
    if !python.exists() {
        eprintln!(
            "\n!!!!!!!! SKIPPED: no Python environment at {venv} (the Python bot's pinned libraries); run tests/setup.sh !!!!!!!!\n"
        );
        return None;
    }
    Some(python)
}

/// `tests/python/<name>`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Runs `tests/python/<name>` in the virtual environment with `lines` on
/// its standard input, one per line, and returns its output lines; `None`
/// (with a loud SKIPPED line) when the environment is not there.
pub fn run(name: &str, lines: &[String]) -> Option<Vec<String>> {
    let python = interpreter()?;
    let path = script(name);
    let mut child = Command::new(python)
        .arg("-I")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python starts");
    let mut stdin = child.stdin.take().expect("piped");
    let input = lines.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python runs");
    writer
        .join()
        .expect("writer")
        .expect("python reads its input");
    assert!(
        out.status.success(),
        "{} failed: {:?}",
        path.display(),
        out.status
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let lines: Vec<String> = text.lines().map(String::from).collect();
    Some(lines)
}
