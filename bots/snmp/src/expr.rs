//! [`SensorExpr`]: a sensor's `expression`, compiled once and evaluated per
//! row.
//!
//! The language is the Python bot's: mathjspy 0.0.9, reproduced step by
//! step in `src/mathjs.rs` (its odd results included, such as `10/4%3`
//! being 10) and checked against mathjspy itself by
//! `tests/parity_expr.rs`. The bot's deliberate differences:
//!
//! - An expression mathjspy cannot read at all, whatever the values (such
//!   as `-$1`, `$1 * -1`, `2 ^ -1` or `1e-3 * $1`), is read as ordinary
//!   arithmetic by [exmex](https://docs.rs/exmex) (`+ - * / ^ %`, `min`,
//!   `max`, `round`, `sqrt`, `log`, `sin`, …, with exponent literals).
//!   mathjspy raised on every row of such a sensor.
//! - A result that is infinite or not a number, or that depends on a
//!   division by zero, skips the row (with a warning); mathjspy gave 0 for
//!   the division and the backend refused the others.
//! - A comparison's result is sent as 1 or 0, where mathjspy gave `true`
//!   or `false`.
//! - `irr` is not supported (mathjspy called numpy's, since removed).
//! - Integers past ±2^127 (mathjspy's are unbounded) are computed as floats.
use exmex::prelude::*;
use exmex::{BinOp, FloatOpsFactory, MakeOperators, MatchLiteral, Operator};

pub use crate::mathjs::EvalError;
use crate::mathjs::{Program, SyntaxError};

/// exmex's float operators, plus `%`.
#[derive(Clone, Debug)]
pub struct SensorOps;

impl MakeOperators<f64> for SensorOps {
    fn make<'a>() -> Vec<Operator<'a, f64>> {
        let mut ops = FloatOpsFactory::<f64>::make();
        ops.push(Operator::make_bin(
            "%",
            BinOp {
                apply: |a, b| a % b,
                prio: 3,
                is_commutative: false,
            },
        ));
        ops
    }
}

/// Number literals with an optional exponent (`1e-3`, `2.5E6`).
#[derive(Clone, Debug, Default)]
pub struct SciLiteral;

impl MatchLiteral for SciLiteral {
    fn is_literal(text: &str) -> Option<&str> {
        static RE: std::sync::LazyLock<exmex::regex::Regex> = std::sync::LazyLock::new(|| {
            exmex::regex::Regex::new(r"^(\.?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?)")
                .expect("a valid regex")
        });
        RE.find(text).map(|m| m.as_str())
    }
}

type Expr = FlatEx<f64, SensorOps, SciLiteral>;

/// Why an expression cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExprError {
    /// It does not parse.
    #[error("the expression {expression:?} cannot be parsed: {reason}")]
    Parse {
        /// The expression.
        expression: String,
        /// What the parser said.
        reason: String,
    },
    /// It uses `$N` with N not between 1 and the number of OIDs.
    #[error("the expression {expression:?} uses ${n}, but the sensor has {oids} OIDs")]
    NoSuchOid {
        /// The expression.
        expression: String,
        /// The N in `$N`.
        n: usize,
        /// The number of OIDs.
        oids: usize,
    },
    /// It names a variable that is not `$N`.
    #[error("the expression {expression:?} uses {name:?}; only $1, $2, … are defined")]
    UnknownName {
        /// The expression.
        expression: String,
        /// The name.
        name: String,
    },
}

/// How a [`SensorExpr`] is evaluated.
#[derive(Clone, Debug)]
enum Engine {
    /// As mathjspy does.
    MathJs(Program),
    /// As arithmetic (an expression mathjspy cannot read), with the
    /// 0-based OID position of each exmex variable, in exmex's order.
    Arithmetic(Box<Expr>, Vec<usize>),
}

/// A compiled expression.
///
/// ```
/// use grafolean_snmp_bot::expr::SensorExpr;
/// let e = SensorExpr::parse("$2 / 1000.0 + $1 % 7", 2).unwrap();
/// assert_eq!(e.uses(), &[0, 1]);
/// assert_eq!(e.eval(&[9.0, 45000.0]).unwrap(), 47.0);
/// // mathjspy's precedence: `%` before `/`.
/// assert_eq!(SensorExpr::parse("10/4%3", 0).unwrap().eval(&[]).unwrap(), 10.0);
/// assert!(SensorExpr::parse("$3", 2).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct SensorExpr {
    source: String,
    engine: Engine,
}

impl PartialEq for SensorExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl SensorExpr {
    /// Parses `expression` for a sensor with `oids` OIDs.
    pub fn parse(expression: &str, oids: usize) -> Result<Self, ExprError> {
        // `$N` past the sensor's OIDs, whichever way it is read.
        let bytes = expression.as_bytes();
        for (i, _) in expression.match_indices('$') {
            let digits: String = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .map(|&b| char::from(b))
                .collect();
            if let Ok(n) = digits.parse::<usize>()
                && (n == 0 || n > oids)
            {
                return Err(ExprError::NoSuchOid {
                    expression: expression.into(),
                    n,
                    oids,
                });
            }
        }
        let engine = match Program::compile(expression, oids) {
            Ok(program) => Engine::MathJs(program),
            Err(SyntaxError(reason)) => match arithmetic(expression, oids) {
                Ok((expr, slots)) => Engine::Arithmetic(Box::new(expr), slots),
                Err(ExprError::Parse { .. }) => {
                    return Err(ExprError::Parse {
                        expression: expression.into(),
                        reason,
                    });
                }
                Err(other) => return Err(other),
            },
        };
        Ok(Self {
            source: expression.into(),
            engine,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether it is read as mathjspy reads it (else as arithmetic: see the
    /// module's documentation).
    pub fn is_mathjspy(&self) -> bool {
        matches!(self.engine, Engine::MathJs(_))
    }

    /// The 0-based positions of the OIDs whose values it reads.
    pub fn uses(&self) -> &[usize] {
        match &self.engine {
            Engine::MathJs(p) => p.vars(),
            Engine::Arithmetic(_, slots) => slots,
        }
    }

    /// Evaluates it with `values[i]` the value of OID `i` (0-based); only
    /// the positions in [`SensorExpr::uses`] are read.
    pub fn eval(&self, values: &[f64]) -> Result<f64, EvalError> {
        match &self.engine {
            Engine::MathJs(p) => p.eval(values),
            Engine::Arithmetic(expr, slots) => {
                let mut small = [0.0; 8];
                let large: Vec<f64>;
                let vars: &[f64] = if slots.len() <= small.len() {
                    for (v, &slot) in small.iter_mut().zip(slots) {
                        *v = values.get(slot).copied().unwrap_or(f64::NAN);
                    }
                    &small[..slots.len()]
                } else {
                    large = slots
                        .iter()
                        .map(|&s| values.get(s).copied().unwrap_or(f64::NAN))
                        .collect();
                    &large
                };
                expr.eval(vars)
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or(EvalError::NotFinite)
            }
        }
    }
}

/// `expression` as exmex arithmetic, with `$N` as the variable `xN`.
fn arithmetic(expression: &str, oids: usize) -> Result<(Expr, Vec<usize>), ExprError> {
    let mut rewritten = String::with_capacity(expression.len());
    let mut chars = expression.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            rewritten.push('x');
        } else {
            rewritten.push(c);
        }
    }
    let expr = Expr::parse(&rewritten).map_err(|e| ExprError::Parse {
        expression: expression.into(),
        reason: e.to_string(),
    })?;
    let mut slots = Vec::new();
    for name in expr.var_names() {
        let n = name
            .strip_prefix('x')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ExprError::UnknownName {
                expression: expression.into(),
                name: name.clone(),
            })?;
        if n == 0 || n > oids {
            return Err(ExprError::NoSuchOid {
                expression: expression.into(),
                n,
                oids,
            });
        }
        slots.push(n - 1);
    }
    Ok((expr, slots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_examples() {
        let e = SensorExpr::parse("$2", 2).unwrap();
        assert_eq!(e.eval(&[f64::NAN, 12.0]), Ok(12.0));
        let e = SensorExpr::parse("$1 + $2", 2).unwrap();
        assert_eq!(e.eval(&[500.0, 60000.0]), Ok(60500.0));
        let e = SensorExpr::parse("$2 / 1000.0", 2).unwrap();
        assert_eq!(e.eval(&[0.0, 45000.0]), Ok(45.0));
        assert!(e.is_mathjspy());
    }

    #[test]
    fn variables_map_by_number_not_by_name_order() {
        // exmex sorts names, so x10 comes before x2.
        // The second is arithmetic: mathjspy reads it as `sub(add(, $10, $2))`.
        for source in ["$2 - $10", "-$10 + $2"] {
            let e = SensorExpr::parse(source, 10).unwrap();
            let mut values = [0.0; 10];
            values[1] = 5.0;
            values[9] = 2.0;
            assert_eq!(e.eval(&values), Ok(3.0), "{source}");
        }
    }

    #[test]
    fn what_mathjspy_cannot_read_is_arithmetic() {
        for (expr, want) in [
            ("-$1", -2.0),
            ("$1 * -1", -2.0),
            ("1e-3 * $1", 0.002),
            ("2 ^ -1", 0.5),
        ] {
            let e = SensorExpr::parse(expr, 1).unwrap();
            assert!(!e.is_mathjspy(), "{expr}");
            assert_eq!(e.eval(&[2.0]), Ok(want), "{expr}");
        }
        for (expr, want) in [
            ("7 % 4", 3.0),
            ("2 ^ 3", 8.0),
            ("max($1, 5)", 5.0),
            ("round(2.6)", 3.0),
            ("round(2.5)", 2.0),
            ("sqrt(16)", 4.0),
        ] {
            let e = SensorExpr::parse(expr, 1).unwrap();
            assert!(e.is_mathjspy(), "{expr}");
            assert_eq!(e.eval(&[2.0]), Ok(want), "{expr}");
        }
    }

    #[test]
    fn no_number_is_an_error_with_the_reason() {
        let e = SensorExpr::parse("$1 / $2", 2).unwrap();
        assert_eq!(e.eval(&[1.0, 0.0]), Err(EvalError::DivisionByZero));
        let e = SensorExpr::parse("$1 * $2", 2).unwrap();
        assert_eq!(e.eval(&[1e300, 1e300]), Err(EvalError::NotFinite));
        let e = SensorExpr::parse("sqrt($1)", 1).unwrap();
        assert!(matches!(e.eval(&[-1.0]), Err(EvalError::Raised(_))));
    }

    #[test]
    fn bad_expressions() {
        assert!(matches!(
            SensorExpr::parse("$1 +", 1),
            Err(ExprError::Parse { .. })
        ));
        assert!(matches!(
            SensorExpr::parse("$0", 1),
            Err(ExprError::NoSuchOid { .. })
        ));
        assert!(matches!(
            SensorExpr::parse("y + 1", 1),
            Err(ExprError::UnknownName { .. })
        ));
    }
}
