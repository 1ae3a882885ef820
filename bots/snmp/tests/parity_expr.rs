//! The SNMP bot's expressions against mathjspy 0.0.9 itself (the Python
//! bot's pinned version, installed from PyPI by tests/setup.sh): 12,000
//! generated expressions (every operator, function and literal form, random
//! nesting and spacing, values including zero, negatives and huge numbers)
//! evaluated by both. Every result must be the same, or one of the bot's
//! deliberate differences (see `src/expr.rs`), counted by kind.

mod common;

use std::collections::BTreeMap;

use grafolean_snmp_bot::expr::{EvalError, SensorExpr};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

const LITERALS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "7",
    "10",
    "100",
    "65536",
    "12345678901234567890",
    "0.5",
    "2.5",
    "3.75",
    "1.",
    ".5",
    "1000.",
    "1e300",
    "1e-3",
    "2E+2",
    "1_000",
    "pi",
    "e",
    "-1",
    "-2.5",
    "0.1",
];

const OIDS: usize = 3;

const VALUES: &[f64] = &[
    0.0,
    1.0,
    2.0,
    -1.0,
    0.5,
    2.5,
    3.0,
    -7.25,
    1e300,
    1e-9,
    123456.789,
    65535.0,
    4294967295.0,
];

fn leaf(rng: &mut Rng) -> String {
    if rng.below(3) == 0 {
        format!("${}", 1 + rng.below(OIDS))
    } else {
        rng.pick(LITERALS).to_string()
    }
}

fn space(rng: &mut Rng) -> &'static str {
    if rng.below(4) == 0 { "" } else { " " }
}

fn expression(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 || rng.below(4) == 0 {
        return leaf(rng);
    }
    let sub = |rng: &mut Rng| expression(rng, depth - 1);
    match rng.below(9) {
        0 | 1 => {
            let op = rng.pick(&["+", "-", "*", "/", "%", "^"]);
            let (a, b) = (sub(rng), sub(rng));
            let s = space(rng);
            format!("{a}{s}{op}{s}{b}")
        }
        2 => {
            let op = rng.pick(&[">", "<", ">=", "<=", "==", "="]);
            let (a, b) = (sub(rng), leaf(rng));
            let s = if rng.below(8) == 0 { "" } else { " " };
            format!("{a}{s}{op}{s}{b}")
        }
        3 => {
            let op = rng.pick(&[">", "<", ">=", "<=", "=="]);
            let (a, b, c, d) = (leaf(rng), leaf(rng), sub(rng), sub(rng));
            format!("{a} {op} {b} ? {c} : {d}")
        }
        4 => format!("({})", sub(rng)),
        5 => format!("-{}", sub(rng)),
        _ => {
            let (name, arity) = match rng.below(24) {
                0 => ("add", 2),
                1 => ("sub", 2),
                2 => ("mul", 2),
                3 => ("div", 2),
                4 => ("mod", 2),
                5 => ("pow", 2),
                6 => ("min", 2 + rng.below(3)),
                7 => ("max", 2 + rng.below(3)),
                8 => ("round", 1),
                9 => ("round", 2),
                10 => ("sqrt", 1),
                11 => ("log", 1),
                12 => ("log", 2),
                13 => ("sin", 1),
                14 => ("cos", 1),
                15 => ("tan", 1),
                16 => ("sgn", 1),
                17 => ("trunc", 1),
                18 => ("ifElse", 3),
                19 => ("ifElseAlt", 3),
                20 => ("npv", 0),
                21 => ("irr", 3),
                22 => ("max", 1),
                _ => ("sqrt", 2),
            };
            if name == "npv" {
                let (r, a, b, c) = (leaf(rng), leaf(rng), leaf(rng), sub(rng));
                return format!("npv({r}, ({a}, {b}, {c}))");
            }
            let sep = if rng.below(3) == 0 { "," } else { ", " };
            let args: Vec<String> = (0..arity)
                .map(|i| {
                    // round's digits: an integer, sometimes a negative one.
                    if name == "round" && i == 1 {
                        rng.pick(&["0", "1", "2", "3", "0 - 2", "$1", "1.5"])
                            .to_string()
                    } else {
                        sub(rng)
                    }
                })
                .collect();
            format!("{name}({})", args.join(sep))
        }
    }
}

/// How the Python bot's mathjspy answered.
#[derive(serde::Deserialize)]
struct Reference {
    kind: String,
    value: Option<String>,
    error: Option<String>,
    zero_div: bool,
}

#[test]
fn generated_expressions_give_what_mathjspy_gives() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut cases = Vec::new();
    while cases.len() < 12_000 {
        let depth = 1 + rng.below(4);
        let e = expression(&mut rng, depth);
        let values: Vec<f64> = (0..OIDS).map(|_| VALUES[rng.below(VALUES.len())]).collect();
        cases.push((e, values));
    }
    let lines: Vec<String> = cases
        .iter()
        .map(|(e, v)| serde_json::json!({"e": e, "v": v}).to_string())
        .collect();
    let Some(answers) = common::python::run("expr.py", &lines) else {
        return;
    };
    assert_eq!(answers.len(), cases.len());
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut differences = Vec::new();
    for ((e, values), answer) in cases.iter().zip(&answers) {
        let py: Reference = serde_json::from_str(answer).unwrap();
        let rust = SensorExpr::parse(e, OIDS);
        let mathjspy = rust.as_ref().is_ok_and(SensorExpr::is_mathjspy);
        let got = match &rust {
            Ok(x) => x.eval(values),
            Err(err) => Err(EvalError::Raised(err.to_string())),
        };
        let py_number = py
            .value
            .as_deref()
            .filter(|_| py.kind == "int" || py.kind == "float")
            .map(|v| v.parse::<f64>().expect("a Python number"));
        let kind = match (&py.error, py_number, &got) {
            (Some(_), _, Err(_)) => "both raised",
            (None, _, Err(EvalError::Raised(why))) if why == "irr is not supported" => {
                "deliberate: irr is not supported"
            }
            // The bot reads what mathjspy cannot as arithmetic.
            (Some(_), _, Ok(_)) if !mathjspy => "deliberate: arithmetic where mathjspy raised",
            (None, _, Err(EvalError::DivisionByZero)) if py.zero_div => {
                "deliberate: division by zero skips the row"
            }
            (None, Some(p), Ok(r)) if p == *r => "same number",
            (None, Some(p), Err(EvalError::NotFinite)) if !p.is_finite() => {
                "deliberate: a result that is not finite skips the row"
            }
            (None, None, Ok(r)) if py.kind == "bool" => {
                let want = if py.value.as_deref() == Some("True") {
                    1.0
                } else {
                    0.0
                };
                if *r == want {
                    "deliberate: a comparison is 1 or 0"
                } else {
                    "DIFFERENT"
                }
            }
            // A tuple: the backend refused it.
            (None, None, Err(_)) if py.kind == "other" => "both no number",
            _ => "DIFFERENT",
        };
        if kind == "DIFFERENT" {
            differences.push(format!(
                "{e:?} with {values:?}: mathjspy {}, the bot {got:?} (read as {})",
                py.error.as_ref().or(py.value.as_ref()).unwrap(),
                if mathjspy { "mathjspy" } else { "arithmetic" }
            ));
        }
        *kinds.entry(kind).or_default() += 1;
    }
    eprintln!("{} expressions:", cases.len());
    for (kind, n) in &kinds {
        eprintln!("  {n:>6}  {kind}");
    }
    for d in differences.iter().take(20) {
        eprintln!("DIFFERENT: {d}");
    }
    assert!(differences.is_empty(), "{} differences", differences.len());
    // The test means something only if many expressions give numbers.
    assert!(
        kinds.get("same number").copied().unwrap_or(0) >= 4000,
        "{kinds:?}"
    );
}
