//! [`SensorExpr`]: a sensor's `expression`, compiled once and evaluated per
//! row.
//!
//! The Python bot used mathjspy; this uses [exmex](https://docs.rs/exmex),
//! which parses once and evaluates in tens of nanoseconds. `$N` (the N-th
//! OID's value) is rewritten to a variable `xN` before parsing. On top of
//! exmex's float operators (`+ - * / ^`, `min`, `max`, `round`, `sqrt`,
//! `log`, `sin`, …) it adds `%` and exponent literals such as `1e-3`.
//!
//! A result that is not finite (such as a division by zero) is reported as
//! such, so that the caller skips the row with a warning; mathjspy returned 0.

use exmex::prelude::*;
use exmex::{BinOp, FloatOpsFactory, MakeOperators, MatchLiteral, Operator};

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

/// A compiled expression.
///
/// ```
/// use grafolean_snmp_bot::expr::SensorExpr;
/// let e = SensorExpr::parse("$2 / 1000.0 + $1 % 7 * 1e-3", 2).unwrap();
/// assert_eq!(e.uses(), &[0, 1]);
/// assert_eq!(e.eval(&[9.0, 45000.0]).unwrap(), 45.002);
/// assert!(SensorExpr::parse("$3", 2).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct SensorExpr {
    source: String,
    expr: Expr,
    /// The 0-based OID position of each exmex variable, in exmex's order.
    slots: Vec<usize>,
}

impl PartialEq for SensorExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl SensorExpr {
    /// Parses `expression` for a sensor with `oids` OIDs.
    pub fn parse(expression: &str, oids: usize) -> Result<Self, ExprError> {
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
        Ok(Self {
            source: expression.into(),
            expr,
            slots,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The 0-based positions of the OIDs whose values it reads (exmex's
    /// variable order).
    pub fn uses(&self) -> &[usize] {
        &self.slots
    }

    /// Evaluates it with `values[i]` the value of OID `i` (0-based); only
    /// the positions in [`SensorExpr::uses`] are read. `None` if the result
    /// is not finite.
    pub fn eval(&self, values: &[f64]) -> Option<f64> {
        let mut small = [0.0; 8];
        let large: Vec<f64>;
        let vars: &[f64] = if self.slots.len() <= small.len() {
            for (v, &slot) in small.iter_mut().zip(&self.slots) {
                *v = values.get(slot).copied().unwrap_or(f64::NAN);
            }
            &small[..self.slots.len()]
        } else {
            large = self
                .slots
                .iter()
                .map(|&s| values.get(s).copied().unwrap_or(f64::NAN))
                .collect();
            &large
        };
        self.expr.eval(vars).ok().filter(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_examples() {
        let e = SensorExpr::parse("$2", 2).unwrap();
        assert_eq!(e.eval(&[f64::NAN, 12.0]), Some(12.0));
        let e = SensorExpr::parse("$1 + $2", 2).unwrap();
        assert_eq!(e.eval(&[500.0, 60000.0]), Some(60500.0));
        let e = SensorExpr::parse("$2 / 1000.0", 2).unwrap();
        assert_eq!(e.eval(&[0.0, 45000.0]), Some(45.0));
    }

    #[test]
    fn variables_map_by_number_not_by_name_order() {
        // exmex sorts names, so x10 comes before x2.
        let e = SensorExpr::parse("$2 - $10", 10).unwrap();
        let mut values = [0.0; 10];
        values[1] = 5.0;
        values[9] = 2.0;
        assert_eq!(e.eval(&values), Some(3.0));
    }

    #[test]
    fn operators_and_literals() {
        for (expr, want) in [
            ("7 % 4", 3.0),
            ("2 ^ 3", 8.0),
            ("-$1", -2.0),
            ("$1 * -1", -2.0),
            ("1e-3 * $1", 0.002),
            ("max($1, 5)", 5.0),
            ("round(2.6)", 3.0),
            ("sqrt(16)", 4.0),
        ] {
            assert_eq!(
                SensorExpr::parse(expr, 1).unwrap().eval(&[2.0]),
                Some(want),
                "{expr}"
            );
        }
    }

    #[test]
    fn non_finite_results_are_none() {
        let e = SensorExpr::parse("$1 / $2", 2).unwrap();
        assert_eq!(e.eval(&[1.0, 0.0]), None);
        assert_eq!(e.eval(&[0.0, 0.0]), None);
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
