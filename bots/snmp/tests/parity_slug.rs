//! The slug of a `{$N}` value against the Python bot's own: python-slugify
//! 4.0.0 with text-unidecode 1.3, run by `tests/python/slug.py` in the
//! virtual environment that `tests/setup.sh` makes (`$SNMP_PARITY_VENV`, by
//! default /tmp/grafolean-snmp-parity).
//!
//! - 12,000 strings from a seeded generator (ASCII, punctuation, white
//!   space, Latin-1, Latin Extended, Greek, Cyrillic, CJK, emoji, combining
//!   marks, HTML entities and numeric references, nested ones, quotes,
//!   digits with commas, control characters, UTF-8 read as Latin-1) and a
//!   list of edge cases;
//! - every code point, as itself, as `&#x…;` and inside `&#x&#…;;`;
//! - the tables `src/slug/tables.rs` took from that Python.
//!
//! Each asserts 0 differences. Without the virtual environment each says so
//! loudly and passes.

mod common;

use std::process::Command;
use std::time::Instant;

use common::python;
use grafolean_snmp_bot::slug::slugify;

/// The Python bot's slugs of `inputs`, from one run of the script.
fn python_slugs(inputs: &[String]) -> Option<Vec<String>> {
    let lines: Vec<String> = inputs
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    let out: Vec<String> = python::run("slug.py", &lines)?
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), inputs.len(), "one slug per string");
    Some(out)
}

/// Slugs `inputs` both ways; panics with the first differences.
fn compare(what: &str, inputs: &[String]) {
    let started = Instant::now();
    let Some(expected) = python_slugs(inputs) else {
        return;
    };
    let python_took = started.elapsed();
    let started = Instant::now();
    let got: Vec<String> = inputs.iter().map(|s| slugify(s)).collect();
    let rust_took = started.elapsed();
    let differences: Vec<usize> = (0..inputs.len())
        .filter(|&i| got[i] != expected[i])
        .collect();
    let chars: usize = inputs.iter().map(|s| s.chars().count()).sum();
    eprintln!(
        "{what}: {} strings ({chars} characters), {} differences; python-slugify {python_took:.2?}, Rust {rust_took:.2?}",
        inputs.len(),
        differences.len()
    );
    for &i in differences.iter().take(8) {
        let (input, want, have) = (&inputs[i], &expected[i], &got[i]);
        let at = want
            .bytes()
            .zip(have.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let from = at.saturating_sub(40);
        eprintln!(
            "  #{i} {:?}\n    python: …{:?}\n    rust:   …{:?}",
            if input.len() > 300 {
                format!("({} bytes)", input.len())
            } else {
                input.clone()
            },
            want.get(from..(at + 40).min(want.len())).unwrap_or(want),
            have.get(from..(at + 40).min(have.len())).unwrap_or(have),
        );
    }
    assert!(
        differences.is_empty(),
        "{what}: slugs differ from python-slugify's"
    );
}

/// splitmix64: the same strings on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u32) as usize]
    }

    /// A character from the range, or U+FFFD for a surrogate.
    fn char_in(&mut self, from: u32, to: u32) -> char {
        char::from_u32(from + self.below(to - from + 1)).unwrap_or('\u{FFFD}')
    }
}

/// Names after `&`: HTML 4's, some that are not (`apos` is HTML 5 only),
/// and wrong case.
const ENTITY_NAMES: &[&str] = &[
    "amp", "lt", "gt", "quot", "nbsp", "eacute", "Eacute", "uuml", "szlig", "AElig", "oelig",
    "copy", "reg", "trade", "deg", "micro", "sup2", "frac12", "frac34", "mdash", "ndash", "hellip",
    "rsquo", "lsquo", "prime", "euro", "not", "notin", "thetasym", "Omega", "alpha", "fnof",
    "ensp", "thinsp", "zwnj", "lrm", "bull", "infin", "apos", "AMP", "Amp", "ampx", "", "nbs", "x",
    "#",
];

/// Texts read as bytes, as easysnmp reads an OCTET STRING: UTF-8 text
/// becomes Latin-1 mojibake.
const UTF8_WORDS: &[&str] = &[
    "Température",
    "Größe",
    "Ελληνικά",
    "Привет",
    "日本語",
    "😀",
    "naïve café",
    "Ethernet‑1",
    "Łódź",
];

fn push_piece(rng: &mut Rng, s: &mut String) {
    match rng.below(22) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                s.push(rng.pick(b"ABCXYZabcxyz0123456789_eth") as char);
            }
        }
        1 => {
            for _ in 0..1 + rng.below(3) {
                s.push(rng.pick(b" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") as char);
            }
        }
        2 => s.push(rng.pick(&[
            ' ', '\t', '\n', '\r', '\x0b', '\x0c', '\u{a0}', '\u{85}', '\u{2003}', '\u{3000}',
            '\u{200b}', '\u{2028}',
        ])),
        3 => s.push(rng.char_in(0xa0, 0xff)),
        4 => s.push(if rng.below(2) == 0 {
            rng.char_in(0x100, 0x24f)
        } else {
            rng.char_in(0x1e00, 0x1eff)
        }),
        5 => s.push(rng.char_in(0x370, 0x4ff)),
        6 => s.push(match rng.below(4) {
            0 => rng.char_in(0x4e00, 0x9fff),
            1 => rng.char_in(0x3400, 0x4dbf),
            2 => rng.char_in(0xac00, 0xd7a3),
            _ => rng.char_in(0x3040, 0x30ff),
        }),
        7 => {
            s.push(rng.char_in(0x1f300, 0x1faff));
            match rng.below(4) {
                0 => s.push('\u{fe0f}'),
                1 => {
                    s.push('\u{200d}');
                    s.push(rng.char_in(0x1f300, 0x1faff));
                }
                _ => {}
            }
        }
        8 => s.push(rng.char_in(0x300, 0x36f)),
        9 => {
            s.push('&');
            s.push_str(rng.pick(ENTITY_NAMES));
            if rng.below(6) > 0 {
                s.push(';');
            }
        }
        10 => {
            let n = match rng.below(7) {
                0 => rng.below(128),
                1 => 128 + rng.below(0x780),
                2 => rng.below(0x10000),
                3 => rng.below(0x110000),
                4 => 0xd800 + rng.below(0x800),
                5 => 0x110000 + rng.below(1 << 20),
                _ => rng.pick(&[
                    0, 38, 39, 44, 45, 48, 59, 65, 95, 160, 233, 1633, 8230, 65292,
                ]),
            };
            let zeros = if rng.below(5) == 0 { rng.below(4) } else { 0 };
            s.push_str(&format!("&#{}{n};", "0".repeat(zeros as usize)));
        }
        11 => {
            let n = match rng.below(5) {
                0 => rng.below(256),
                1 => rng.below(0x10000),
                2 => rng.below(0x110000),
                3 => 0x110000 + rng.below(1 << 24),
                _ => rng.pick(&[
                    0x26, 0x27, 0x2c, 0xe9, 0x1d400, 0x1ccd6, 0x1fbf5, 0xfb01, 0x2460,
                ]),
            };
            s.push_str(match rng.below(6) {
                0 => "&#X",
                1 => "&#x0",
                _ => "&#x",
            });
            if rng.below(2) == 0 {
                s.push_str(&format!("{n:x};"));
            } else {
                s.push_str(&format!("{n:X};"));
            }
        }
        12 => s.push_str(rng.pick(&[
            "&amp;#65;",
            "&amp;#x41;",
            "&#38;#x41;",
            "&#38;#65;",
            "&#38;amp;",
            "&#x26;amp;",
            "&#x&#1633;;",
            "&#x&#1633;&#1634;;",
            "&#x1&#1783;;",
            "&#&#48;;",
            "&amp;amp;",
            "&&amp;;",
            "&#49;,&#50;",
            "1&#44;2",
            "&#x31;&#44;&#x32;",
            "＆amp；",
            "＆＃６５；",
            "&#9999999999999;",
            "&#x110000;",
        ])),
        13 => s.push_str(rng.pick(&[
            "'", "''", "\"", "`", "’", "‘", "ʼ", "&#39;", "&#x27;", "ь", "Ъ", "＇", "x'y", "'s",
        ])),
        14 => s.push_str(rng.pick(&[
            "1,2",
            "1,,2",
            "12,345,678",
            "1,a",
            ",1",
            "1,",
            "١,٢",
            "１，２",
            "1',2",
            "1,'2",
            "9,0,1",
            "0,0",
            "1 ,2",
            "²,³",
        ])),
        15 => s.push(match rng.below(3) {
            0 => rng.char_in(0, 0x1f),
            1 => '\x7f',
            _ => rng.char_in(0x80, 0x9f),
        }),
        16 => s.push(rng.char_in(0xff01, 0xff5e)),
        17 => s.push(rng.char_in(0, 0x10ffff)),
        18 => s.push_str(rng.pick(&["-", "--", "_", "__", "—", "–", "‐", "－", "-_-", " - "])),
        19 => s.extend(rng.pick(UTF8_WORDS).bytes().map(char::from)),
        20 => s.push(rng.char_in(0x2000, 0x2bff)),
        _ => s.push(rng.char_in(0xf900, 0xfffd)),
    }
}

/// Edge cases first, then the generator's strings.
fn generated(count: usize) -> Vec<String> {
    let mut inputs: Vec<String> = [
        "Température",
        "1,2",
        "&amp;",
        "Core 6",
        "asdf.QWER",
        "",
        "'",
        "a😀b",
        "obj'ekt",
        "объект",
        "&eacute;",
        "&#65;&#9999999;",
        "&#x41;&#x110000;",
        "&#65;&#x110000;",
        "&#xD800;x",
        "Ã©",
        "  eth0: up! ",
        "GigabitEthernet0/1",
        "Intel(R) PRO/1000 MT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // int() refuses more than 4,300 decimal digits (Python 3.11), so the
    // whole decimal pass is skipped; hexadecimal has no such limit.
    for zeros in [4297, 4298, 4299] {
        inputs.push(format!("&#{}65;", "0".repeat(zeros)));
    }
    inputs.push(format!("&#x{}41;", "0".repeat(5000)));
    let mut rng = Rng(24);
    while inputs.len() < count {
        let mut s = String::new();
        for _ in 0..rng.below(13) {
            push_piece(&mut rng, &mut s);
        }
        inputs.push(s);
    }
    inputs
}

#[test]
fn generated_strings_match_python_slugify() {
    compare("generated", &generated(12_000));
}

#[test]
fn every_code_point_matches_python_slugify() {
    // Each code point as itself (text-unidecode's table), as `&#x…;` (NFKD)
    // and inside `&#x&#…;;` (a decimal digit read by the hexadecimal pass),
    // between ` Q ` so that each gives its own part of the slug.
    let mut inputs = Vec::new();
    let mut s = String::new();
    for (n, c) in ('\0'..=char::MAX).enumerate() {
        let cp = c as u32;
        s.push_str(" Q ");
        s.push(c);
        s.push_str(&format!(" Q &#x{cp:X}; Q &#x&#{cp};;"));
        if n % 256 == 255 {
            inputs.push(std::mem::take(&mut s));
        }
    }
    inputs.push(s);
    compare("every code point", &inputs);
}

#[test]
fn tables_match_python() {
    let Some(interpreter) = python::interpreter() else {
        return;
    };
    let out = Command::new(interpreter)
        .arg("-I")
        .arg(python::script("slug.py"))
        .arg("--tables")
        .output()
        .unwrap();
    assert!(out.status.success());
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let want = String::from_utf8(out.stdout).unwrap();
    let have = include_str!("../src/slug/tables.rs");
    assert!(
        words(&want) == words(have),
        "src/slug/tables.rs is not what `tests/python/slug.py --tables` prints; regenerate it"
    );
}
