//! No two modules of the SDK or of a bot import each other (directly or in a
//! ring), and modules name what they use by the module that defines it, not
//! through the crate root's re-exports: run `cargo test --test module_cycles`.
//!
//! A module is a source file (`src/a/b.rs` is `crate::a::b`, `src/a/mod.rs`
//! is `crate::a`). A module uses another when it names a path into it
//! (`use crate::a::b::X`, `crate::a::f()`, `super::x::Y`). A module and its
//! own submodules are one concept and may use each other (a parent uses its
//! children; a child the types of its parent); tests (`tests.rs`, `*_tests.rs`,
//! `tests/` folders) are left out, as they use the crate as its users do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The source files under `dir`, each with its module path.
fn modules(dir: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, at: &[String], out: &mut BTreeMap<Vec<String>, PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut next = at.to_vec();
                next.push(name);
                walk(&path, &next, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module = at.to_vec();
                if !matches!(name.as_str(), "mod" | "lib" | "main") {
                    module.push(name);
                }
                out.insert(module, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &[], &mut out);
    out
}

fn is_test(module: &[String]) -> bool {
    module
        .iter()
        .any(|m| m == "tests" || m.ends_with("_tests") || m == "vectors")
}

/// The paths a file names after `crate::` or `super::`, as segments from the
/// crate root (braces of a `use` are expanded one level).
fn paths(source: &str, module: &[String]) -> Vec<Vec<String>> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        // `super` of `a/b.rs` (module a::b) is `a`; of `a/b/mod.rs` (a::b) also `a`.
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let take = |s: &str| -> Vec<String> {
                s.split("::")
                    .map(|p| {
                        p.chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect::<String>()
                    })
                    .take_while(|p| !p.is_empty())
                    .collect()
            };
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    out.push(resolve(&base, take(item.trim())));
                }
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                // `a::b::{X, Y}`: the part before the brace is the path.
                out.push(resolve(&base, take(&rest[..end])));
            }
        }
    }
    out
}

/// `segments` from `base`, each leading `super` one level up.
fn resolve(base: &[String], segments: Vec<String>) -> Vec<String> {
    let mut path = base.to_vec();
    let mut segments = segments.into_iter().peekable();
    while segments.peek().is_some_and(|s| s == "super") {
        segments.next();
        path.pop();
    }
    path.extend(segments);
    path
}

/// The module a path lands in: its longest prefix that is a module.
fn target<'a>(
    path: &[String],
    modules: &'a BTreeMap<Vec<String>, PathBuf>,
) -> Option<&'a Vec<String>> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get_key_value(&path[..n]).map(|(k, _)| k))
}

/// Problems in the crate under `src`: pairs of modules that use each other,
/// and uses through the crate root's re-exports.
fn check(src: &Path) -> Vec<String> {
    let modules = modules(src);
    let mut uses: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, file) in &modules {
        if is_test(module) {
            continue;
        }
        let source = std::fs::read_to_string(file).unwrap();
        // A test module inside the file is left out, as test files are.
        let source = source
            .find("#[cfg(test)]\nmod ")
            .or_else(|| source.find("#[cfg(all(test"))
            .map_or(source.as_str(), |end| &source[..end]);
        for path in paths(source, module) {
            if path.is_empty() {
                continue;
            }
            match target(&path, &modules) {
                Some(to) if !to.is_empty() => {
                    let related = to.starts_with(module) || module.starts_with(to);
                    if !related && !is_test(to) {
                        uses.entry(module.clone()).or_default().insert(to.clone());
                    }
                }
                _ => {
                    // The root: a re-export, unless it is a module declared there.
                    let name = &path[0];
                    if name != "self" && !module.is_empty() && !name.starts_with(char::is_lowercase)
                    {
                        problems.push(format!(
                            "{}: crate::{} is named through the crate root's re-export",
                            file.display(),
                            path.join("::")
                        ));
                    }
                }
            }
        }
    }
    // Cycles: a module that can reach itself.
    for start in uses.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(Vec<String>, Vec<Vec<String>>)> =
            vec![(start.clone(), vec![start.clone()])];
        while let Some((at, trail)) = stack.pop() {
            for next in uses.get(&at).into_iter().flatten() {
                if next == start {
                    let ring: Vec<String> = trail.iter().map(|m| m.join("::")).collect();
                    problems.push(format!(
                        "{}: a ring of uses: {} -> back",
                        src.display(),
                        ring.join(" -> ")
                    ));
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

#[test]
fn no_two_modules_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for src in ["src", "bots/ping/src", "bots/snmp/src", "bots/netflow/src"] {
        problems.extend(check(&root.join(src)));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The check itself finds a ring, and a use through the root.
#[test]
fn the_check_finds_a_ring_and_a_root_reexport() {
    let dir = std::env::temp_dir().join(format!("module-cycles-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a;\nmod b;\npub use b::Thing;\n").unwrap();
    std::fs::write(dir.join("a/mod.rs"), "use crate::b::Thing;\nmod inner;\n").unwrap();
    std::fs::write(dir.join("a/inner.rs"), "use super::super::b::Thing;\n").unwrap();
    std::fs::write(
        dir.join("b.rs"),
        "pub struct Thing;\nfn f() { crate::a::g(); }\n",
    )
    .unwrap();
    std::fs::write(dir.join("c.rs"), "use crate::Thing;\n").unwrap();
    let problems = check(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("a ring of uses: a -> b")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("crate::Thing")),
        "{problems:#?}"
    );
}
