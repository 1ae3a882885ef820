//! mathjspy 0.0.9, the Python SNMP bot's expression language, step by step.
//!
//! mathjspy (MIT, <https://pypi.org/project/mathjspy/0.0.9/>) does not parse
//! a grammar: it splits the text into tokens at spaces, parentheses and
//! commas, rewrites `?:`, `^`, `%`, `/`, `*`, `+` and `-` into function calls
//! with one regular expression each (`a * b` becomes `mul(a, b)`), splits
//! the result again, nests it by parentheses, and evaluates each list of
//! tokens left to right. That gives results no grammar would: `10/4%3` is
//! 10, `1 > (2)` is 2, and `sqrt(9) > 2.5` compares 9 with 2.5. Users'
//! expressions were written against those results, so this module repeats
//! each step as mathjspy does it (the comments name the Python they stand
//! for), and `tests/parity_expr.rs` checks 10,000 generated expressions
//! against mathjspy itself.
//!
//! Values are Python's: integers (here `i128`; past it, floats), floats,
//! booleans (from comparisons) and tuples (a function's arguments).
//! Where mathjspy raised, this is an error. Where it caught a
//! `ZeroDivisionError` and gave 0, the value is marked, and a result that
//! depends on it is an error too (the bot skips the row rather than send a
//! made-up 0); a guard such as `ifElse($2 > 0, $1 / $2, 0)` still gives 0.

use std::cmp::Ordering;
use std::f64::consts::{E, PI};
use std::sync::LazyLock;

use regex::Regex;

/// How deep parentheses and operators may nest (Python's recursion limit
/// stopped mathjspy at about the same depth).
const MAX_DEPTH: usize = 256;

/// Why an expression cannot be compiled (mathjspy raises whatever values
/// it is given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError(pub String);

/// Why an expression gave no number for a row (the row is skipped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The result depends on a division by zero (mathjspy gave 0 in its
    /// place).
    #[error("division by zero")]
    DivisionByZero,
    /// The result is infinite or not a number.
    #[error("the result is not a finite number")]
    NotFinite,
    /// mathjspy raised this (a math domain error, an overflow, arguments
    /// of the wrong type or number).
    #[error("{0}")]
    Raised(String),
}

fn raised<T>(what: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::Raised(what.into()))
}

/// A function of mathjspy's `FUNCTION_MAP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Add,
    Cos,
    Div,
    IfElse,
    Irr,
    Log,
    Max,
    Min,
    Mod,
    Mul,
    Npv,
    Pow,
    Round,
    Sgn,
    Sin,
    Sqrt,
    Sub,
    Tan,
    Trunc,
}

impl Func {
    fn named(name: &str) -> Option<Func> {
        Some(match name {
            "add" => Func::Add,
            "cos" => Func::Cos,
            "div" => Func::Div,
            "ifElse" | "ifElseAlt" => Func::IfElse,
            "irr" => Func::Irr,
            "log" => Func::Log,
            "max" => Func::Max,
            "min" => Func::Min,
            "mod" => Func::Mod,
            "mul" => Func::Mul,
            "npv" => Func::Npv,
            "pow" => Func::Pow,
            "round" => Func::Round,
            "sgn" => Func::Sgn,
            "sin" => Func::Sin,
            "sqrt" => Func::Sqrt,
            "sub" => Func::Sub,
            "tan" => Func::Tan,
            "trunc" => Func::Trunc,
            _ => return None,
        })
    }
}

/// An operator of mathjspy's `OPERATOR_MAP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Not,
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
}

impl Op {
    fn named(name: &str) -> Option<Op> {
        Some(match name {
            "not" => Op::Not,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "=" | "==" => Op::Eq,
            _ => return None,
        })
    }
}

/// A parsed token.
#[derive(Clone, Debug, PartialEq)]
enum Node {
    /// A parenthesised list.
    List(Vec<Node>),
    /// A number literal, `pi` or `e`.
    Num(Value),
    /// `$N`: the value of OID N-1.
    Var(usize),
    Comma,
    Func(Func),
    Op(Op),
}

/// A Python value.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Int(i128),
    Float(f64),
    Bool(bool),
    Tuple(Vec<V>),
    /// A symbol used as an operand (a function's name, a comma).
    Str,
}

/// A value, and whether it came from a division by zero mathjspy caught.
#[derive(Clone, Debug, PartialEq)]
struct V {
    val: Value,
    zero_div: bool,
}

impl V {
    fn new(val: Value) -> V {
        V {
            val,
            zero_div: false,
        }
    }
}

/// A number, as arithmetic sees it (a bool is an int).
#[derive(Clone, Copy, Debug)]
enum Num {
    I(i128),
    F(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

fn num(v: &Value) -> Option<Num> {
    match v {
        Value::Int(i) => Some(Num::I(*i)),
        Value::Float(f) => Some(Num::F(*f)),
        Value::Bool(b) => Some(Num::I(i128::from(*b))),
        Value::Tuple(_) | Value::Str => None,
    }
}

const TYPE_ERROR: &str = "TypeError: ";

fn type_error<T>(what: &str) -> Result<T, EvalError> {
    raised(format!("{TYPE_ERROR}{what}"))
}

fn number(v: &Value) -> Result<Num, EvalError> {
    num(v).map_or_else(|| type_error("a tuple where a number was expected"), Ok)
}

/// A compiled expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Program {
    root: Vec<Node>,
    vars: Vec<usize>,
}

/// Python's `str.isspace()`, for `split()` and `strip()`.
pub(crate) fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// `MathJS.tokenize`.
fn tokenize(s: &str) -> Vec<String> {
    let s = s
        .replace('[', "(")
        .replace(']', ")")
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace(',', " , ");
    let mut tokens = vec!["(".to_string()];
    tokens.extend(
        s.split(py_space)
            .filter(|t| !t.is_empty())
            .map(String::from),
    );
    tokens.push(")".into());
    tokens
}

/// `MathJS.operator_formatter`: returns the rewritten text and how many
/// tokens it took.
fn operator_formatter(tokens: &[String], depth: usize) -> Result<(String, usize), SyntaxError> {
    if depth > MAX_DEPTH {
        return Err(SyntaxError("nested too deeply".into()));
    }
    let mut i = 0;
    let mut current: Vec<String> = Vec::new();
    while i < tokens.len() {
        match tokens[i].as_str() {
            "(" => {
                current.push("(".into());
                let (fixed, increment) = operator_formatter(&tokens[i + 1..], depth + 1)?;
                current.push(fixed);
                i += increment + 1;
            }
            ")" => {
                let fixed = ordered_functions(&current.join(" "), depth)?;
                return Ok((fixed + " )", i + 1));
            }
            "," => {
                // A comma closes what came before it, as `)(` would.
                let fixed = ordered_functions(&current.join(" "), depth)?;
                let (after, increment) = operator_formatter(&tokens[i + 1..], depth + 1)?;
                return Ok((format!("{fixed}, {after}"), i + increment + 1));
            }
            token => {
                current.push(token.into());
                i += 1;
            }
        }
    }
    Ok((current.join(" "), i))
}

/// mathjspy's regular expressions, in the order it applies them, with the
/// function each match becomes.
static RULES: LazyLock<[(Regex, &str); 7]> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).expect("mathjspy's patterns are valid");
    [
        (re(r"(.*)\?(.*):(.*)"), "ifElse"),
        (re(r"([^%/*+-]+)\^([^%/*+-]+)"), "pow"),
        (re(r"([^/*+-]+)%([^/*+-]+)"), "mod"),
        (re(r"([^*+-]+)/([^*+-]+)"), "div"),
        (re(r"([^+-]+)\*([^+-]+)"), "mul"),
        (re(r"(.+)\+(.+)"), "add"),
        (re(r"(.+)-(.+)"), "sub"),
    ]
});

/// `MathJS.operators_to_ordered_functions`: each rule's `re.sub`, whose
/// matches' parts are rewritten in turn.
fn ordered_functions(expr: &str, depth: usize) -> Result<String, SyntaxError> {
    if depth > MAX_DEPTH {
        return Err(SyntaxError("nested too deeply".into()));
    }
    let mut expr = expr.to_string();
    for (re, name) in RULES.iter() {
        let mut out = String::with_capacity(expr.len() + 16);
        let mut last = 0;
        for caps in re.captures_iter(&expr) {
            let whole = caps.get(0).expect("a match has group 0");
            out.push_str(&expr[last..whole.start()]);
            let mut args = Vec::with_capacity(3);
            for group in caps.iter().skip(1) {
                let arg = group.map_or("", |g| g.as_str()).trim_matches(py_space);
                if arg.is_empty() {
                    return Err(SyntaxError(format!(
                        "an operand of `{}` is missing",
                        operator_of(name)
                    )));
                }
                args.push(ordered_functions(arg, depth + 1)?);
            }
            out.push_str(name);
            out.push('(');
            out.push_str(&args.join(", "));
            out.push(')');
            last = whole.end();
        }
        out.push_str(&expr[last..]);
        expr = out;
    }
    Ok(expr)
}

fn operator_of(function: &str) -> &'static str {
    match function {
        "ifElse" => "? :",
        "pow" => "^",
        "mod" => "%",
        "div" => "/",
        "mul" => "*",
        "add" => "+",
        _ => "-",
    }
}

/// Python's `int(token)` (ASCII digits, `_` between them), if it fits.
fn py_int(t: &str) -> Option<i128> {
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    let ok = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !ok {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// Python's `float(token)`.
pub(crate) fn py_float(t: &str) -> Option<f64> {
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        let v = if lower == "nan" {
            f64::NAN
        } else {
            f64::INFINITY
        };
        return Some(if t.starts_with('-') { -v } else { v });
    }
    // Underscores only between digits; then the usual decimal forms.
    let bytes = body.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let digit = |j: Option<&u8>| j.is_some_and(u8::is_ascii_digit);
            if !digit(i.checked_sub(1).and_then(|j| bytes.get(j))) || !digit(bytes.get(i + 1)) {
                return None;
            }
        } else if !(b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) {
            return None;
        }
    }
    t.replace('_', "").parse().ok()
}

/// `MathJS.parse`, with `MathJS.atom` and the variables put in: each token
/// becomes a [`Node`]; a symbol mathjspy would not know is an error, since
/// its evaluation reaches every token and raises there.
fn parse(
    tokens: &[String],
    at: &mut usize,
    source: &str,
    oids: usize,
    depth: usize,
) -> Result<Node, SyntaxError> {
    if depth > MAX_DEPTH {
        return Err(SyntaxError("nested too deeply".into()));
    }
    let token = tokens
        .get(*at)
        .ok_or_else(|| SyntaxError("unexpected end".into()))?;
    *at += 1;
    match token.as_str() {
        "(" => {
            let mut list = Vec::new();
            loop {
                match tokens.get(*at).map(String::as_str) {
                    None => return Err(SyntaxError("a `(` is not closed".into())),
                    Some(")") => break,
                    Some(_) => list.push(parse(tokens, at, source, oids, depth + 1)?),
                }
            }
            *at += 1;
            Ok(Node::List(list))
        }
        ")" => Err(SyntaxError("unexpected `)`".into())),
        "," => Ok(Node::Comma),
        t => {
            if let Some(i) = py_int(t) {
                return Ok(Node::Num(Value::Int(i)));
            }
            if let Some(f) = py_float(t) {
                return Ok(Node::Num(Value::Float(f)));
            }
            match t {
                "pi" => return Ok(Node::Num(Value::Float(PI))),
                "e" => return Ok(Node::Num(Value::Float(E))),
                _ => {}
            }
            // The bot sets `$N` for N up to the number of OIDs, when the
            // text holds it.
            if let Some(n) = t.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
                && n >= 1
                && n <= oids
                && t == format!("${n}")
                && source.contains(t)
            {
                return Ok(Node::Var(n - 1));
            }
            if let Some(f) = Func::named(t) {
                return Ok(Node::Func(f));
            }
            if let Some(o) = Op::named(t) {
                return Ok(Node::Op(o));
            }
            Err(SyntaxError(format!("unknown symbol {t:?}")))
        }
    }
}

/// What mathjspy raises whatever the values: an operator first in its
/// list, and `not` (which it calls with two arguments).
fn check(list: &[Node], vars: &mut Vec<usize>) -> Result<(), SyntaxError> {
    for (i, node) in list.iter().enumerate() {
        match node {
            Node::Op(_) if i == 0 => {
                return Err(SyntaxError("an operator has nothing on its left".into()));
            }
            Node::Op(Op::Not) => return Err(SyntaxError("`not` is not supported".into())),
            Node::List(inner) => check(inner, vars)?,
            Node::Var(v) => vars.push(*v),
            _ => {}
        }
    }
    Ok(())
}

impl Program {
    /// Compiles `source` for a sensor with `oids` OIDs, as
    /// `MathJS.eval` would read it.
    pub(crate) fn compile(source: &str, oids: usize) -> Result<Program, SyntaxError> {
        let tokens = tokenize(source);
        let (clean, _) = operator_formatter(&tokens, 0)?;
        let tokens = tokenize(&clean);
        let mut at = 0;
        let Node::List(root) = parse(&tokens, &mut at, source, oids, 0)? else {
            unreachable!("tokenize starts with `(`");
        };
        let mut vars = Vec::new();
        check(&root, &mut vars)?;
        vars.sort_unstable();
        vars.dedup();
        let program = Program { root, vars };
        // Arguments of the wrong number or type raise whatever the values
        // (`-$1 + $2` is `sub(add(, $1, $2))`): one evaluation finds them.
        match eval_list(&program.root, &vec![1.0; oids]) {
            Err(EvalError::Raised(why)) if why.starts_with(TYPE_ERROR) => Err(SyntaxError(why)),
            _ => Ok(program),
        }
    }

    /// The 0-based positions of the OIDs it reads, ascending.
    pub(crate) fn vars(&self) -> &[usize] {
        &self.vars
    }

    /// `MathJS.eval` with `$N` set to `values[N-1]`: the result as the
    /// bot sends it (a boolean as 1 or 0), or why there is none.
    pub(crate) fn eval(&self, values: &[f64]) -> Result<f64, EvalError> {
        let v = eval_list(&self.root, values)?;
        if v.zero_div {
            return Err(EvalError::DivisionByZero);
        }
        match v.val {
            Value::Int(i) => Ok(i as f64),
            Value::Float(f) if f.is_finite() => Ok(f),
            Value::Float(_) => Err(EvalError::NotFinite),
            Value::Bool(b) => Ok(f64::from(u8::from(b))),
            Value::Tuple(_) | Value::Str => raised("the result is a list of values, not a number"),
        }
    }
}

/// The value of a leaf token.
fn leaf(node: &Node, values: &[f64]) -> V {
    V::new(match node {
        Node::Num(v) => v.clone(),
        Node::Var(i) => Value::Float(values.get(*i).copied().unwrap_or(f64::NAN)),
        _ => Value::Str,
    })
}

/// `MathJS.eval_parsed_tokens`.
fn eval_list(nodes: &[Node], values: &[f64]) -> Result<V, EvalError> {
    // mathjspy replaces each list by its value in place, and an operator
    // takes the token before it as its left side: for `f(x) > 1`, that is
    // f's argument.
    let mut last_list: Option<V> = None;
    let mut multiple: Vec<V> = Vec::new();
    let mut value = V::new(Value::Int(0));
    let mut current_fn: Option<Func> = None;
    let mut current_op: Option<(Op, V)> = None;
    for (i, node) in nodes.iter().enumerate() {
        match node {
            Node::Comma => multiple.push(std::mem::replace(&mut value, V::new(Value::Int(0)))),
            Node::List(inner) => {
                let r = eval_list(inner, values)?;
                last_list = Some(r.clone());
                value = match current_fn.take() {
                    Some(f) => call(f, r)?,
                    None => r,
                };
            }
            Node::Func(f) => current_fn = Some(*f),
            Node::Op(op) => {
                let left = match &nodes[i - 1] {
                    Node::List(_) => last_list.clone().expect("evaluated just before"),
                    other => leaf(other, values),
                };
                current_op = Some((*op, left));
            }
            Node::Num(_) | Node::Var(_) => {
                let v = leaf(node, values);
                value = match current_op.take() {
                    Some((op, left)) => compare(op, left, v)?,
                    None => v,
                };
            }
        }
    }
    if multiple.is_empty() {
        Ok(value)
    } else {
        multiple.push(value);
        Ok(V::new(Value::Tuple(multiple)))
    }
}

/// Python's comparison of two numbers (an int and a float exactly).
fn cmp_num(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        (Num::F(x), Num::F(y)) => x.partial_cmp(&y),
        (Num::I(x), Num::F(y)) => cmp_int_float(x, y),
        (Num::F(x), Num::I(y)) => cmp_int_float(y, x).map(Ordering::reverse),
    }
}

fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    let limit = 2f64.powi(127);
    if f >= limit {
        return Some(Ordering::Less);
    }
    if f < -limit {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    Some(match i.cmp(&(t as i128)) {
        Ordering::Equal if f > t => Ordering::Less,
        Ordering::Equal if f < t => Ordering::Greater,
        o => o,
    })
}

/// `>`, `<`, `>=`, `<=`, `==` of `OPERATOR_MAP`.
fn compare(op: Op, left: V, right: V) -> Result<V, EvalError> {
    let zero_div = left.zero_div || right.zero_div;
    let (a, b) = (num(&left.val), num(&right.val));
    let result = match (op, a, b) {
        (Op::Eq, Some(a), Some(b)) => cmp_num(a, b) == Some(Ordering::Equal),
        // A tuple or a symbol equals no number.
        (Op::Eq, _, _) => false,
        (_, Some(a), Some(b)) => {
            let o = cmp_num(a, b);
            match op {
                Op::Gt => o == Some(Ordering::Greater),
                Op::Lt => o == Some(Ordering::Less),
                Op::Ge => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
                Op::Le => matches!(o, Some(Ordering::Less | Ordering::Equal)),
                Op::Eq | Op::Not => unreachable!("handled above and in check"),
            }
        }
        _ => return type_error("a comparison of a tuple or a name with a number"),
    };
    Ok(V {
        val: Value::Bool(result),
        zero_div,
    })
}

/// Python's truth of a value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Bool(b) => *b,
        Value::Tuple(t) => !t.is_empty(),
        Value::Str => true,
    }
}

fn arity(args: &[V], n: usize) -> Result<(), EvalError> {
    if args.len() == n {
        Ok(())
    } else {
        type_error(&format!("{} arguments where {n} were expected", args.len()))
    }
}

/// An integer result, or (past `i128`) the float Python would turn it into.
fn int_or_float(i: Option<i128>, approx: f64) -> Value {
    i.map_or(Value::Float(approx), Value::Int)
}

/// Python's `float` of a math function's argument.
fn float_arg(v: &V) -> Result<f64, EvalError> {
    Ok(number(&v.val)?.f())
}

/// Calls `f` as mathjspy does: with the tuple's items, or the one value.
fn call(f: Func, arg: V) -> Result<V, EvalError> {
    let args = match arg.val {
        Value::Tuple(items) => items,
        val => vec![V {
            val,
            zero_div: arg.zero_div,
        }],
    };
    let zero_div = args.iter().any(|a| a.zero_div);
    let val = match apply(f, &args) {
        Ok(v) => v,
        Err(EvalError::DivisionByZero) => {
            // mathjspy: `except ZeroDivisionError: value = 0`.
            return Ok(V {
                val: Value::Int(0),
                zero_div: true,
            });
        }
        Err(e) => return Err(e),
    };
    if f == Func::IfElse {
        // Only the condition and the branch taken count.
        let taken = if truthy(&args[0].val) { 1 } else { 2 };
        return Ok(V {
            val,
            zero_div: args[0].zero_div || args[taken].zero_div,
        });
    }
    Ok(V { val, zero_div })
}

fn apply(f: Func, args: &[V]) -> Result<Value, EvalError> {
    match f {
        Func::Add | Func::Sub | Func::Mul => {
            arity(args, 2)?;
            if let (Func::Add, Value::Tuple(a), Value::Tuple(b)) = (f, &args[0].val, &args[1].val) {
                return Ok(Value::Tuple(a.iter().chain(b).cloned().collect()));
            }
            let (a, b) = (number(&args[0].val)?, number(&args[1].val)?);
            Ok(match (a, b) {
                (Num::I(x), Num::I(y)) => {
                    let (exact, approx) = match f {
                        Func::Add => (x.checked_add(y), x as f64 + y as f64),
                        Func::Sub => (x.checked_sub(y), x as f64 - y as f64),
                        _ => (x.checked_mul(y), x as f64 * y as f64),
                    };
                    int_or_float(exact, approx)
                }
                _ => Value::Float(match f {
                    Func::Add => a.f() + b.f(),
                    Func::Sub => a.f() - b.f(),
                    _ => a.f() * b.f(),
                }),
            })
        }
        Func::Div => {
            arity(args, 2)?;
            let (a, b) = (number(&args[0].val)?, number(&args[1].val)?);
            if b.f() == 0.0 {
                return Err(EvalError::DivisionByZero);
            }
            Ok(Value::Float(a.f() / b.f()))
        }
        Func::Mod => {
            // math.fmod
            arity(args, 2)?;
            let (x, y) = (float_arg(&args[0])?, float_arg(&args[1])?);
            if y == 0.0 && !x.is_nan() || x.is_infinite() && !y.is_nan() {
                return raised("ValueError: math domain error (mod)");
            }
            Ok(Value::Float(x % y))
        }
        Func::Pow => {
            arity(args, 2)?;
            Ok(Value::Float(math_pow(
                float_arg(&args[0])?,
                float_arg(&args[1])?,
            )?))
        }
        Func::Sqrt => {
            arity(args, 1)?;
            let x = float_arg(&args[0])?;
            if x < 0.0 {
                return raised("ValueError: math domain error (sqrt of a negative number)");
            }
            Ok(Value::Float(x.sqrt()))
        }
        Func::Log => {
            let ln = |v: &V| -> Result<f64, EvalError> {
                let x = float_arg(v)?;
                if x <= 0.0 {
                    return raised("ValueError: math domain error (log of a number <= 0)");
                }
                Ok(x.ln())
            };
            match args.len() {
                1 => Ok(Value::Float(ln(&args[0])?)),
                2 => {
                    let (n, d) = (ln(&args[0])?, ln(&args[1])?);
                    if d == 0.0 {
                        return Err(EvalError::DivisionByZero);
                    }
                    Ok(Value::Float(n / d))
                }
                n => type_error(&format!("log takes 1 or 2 arguments, not {n}")),
            }
        }
        Func::Sin | Func::Cos | Func::Tan => {
            arity(args, 1)?;
            let x = float_arg(&args[0])?;
            if x.is_infinite() {
                return raised("ValueError: math domain error (of infinity)");
            }
            Ok(Value::Float(match f {
                Func::Sin => x.sin(),
                Func::Cos => x.cos(),
                _ => x.tan(),
            }))
        }
        Func::Max | Func::Min => {
            if args.len() < 2 {
                return type_error("max and min of one number");
            }
            let mut best = &args[0];
            for a in &args[1..] {
                let o = py_cmp(&a.val, &best.val)?;
                let better = if f == Func::Max {
                    o == Some(Ordering::Greater)
                } else {
                    o == Some(Ordering::Less)
                };
                if better {
                    best = a;
                }
            }
            Ok(best.val.clone())
        }
        Func::Round => round(args),
        Func::Trunc => {
            arity(args, 1)?;
            match number(&args[0].val)? {
                Num::I(i) => Ok(Value::Int(i)),
                Num::F(x) => float_to_int(x.trunc()),
            }
        }
        Func::Sgn => {
            // `abs(a) > 1e-12 and cmp(a, 0) or 0`: Python 3 has no cmp.
            arity(args, 1)?;
            let big = match number(&args[0].val)? {
                Num::I(i) => i != 0,
                Num::F(x) => x.abs() > 1e-12,
            };
            if big {
                return raised("NameError: sgn calls cmp, which Python 3 does not have");
            }
            Ok(Value::Int(0))
        }
        Func::IfElse => {
            arity(args, 3)?;
            Ok(if truthy(&args[0].val) {
                args[1].val.clone()
            } else {
                args[2].val.clone()
            })
        }
        Func::Npv => {
            arity(args, 2)?;
            let rate = number(&args[0].val)?;
            let Value::Tuple(payments) = &args[1].val else {
                return type_error("npv's payments are not a list");
            };
            let base = match rate {
                Num::I(i) => Num::I(i.saturating_add(1)),
                Num::F(x) => Num::F(1.0 + x),
            };
            let mut value = Num::I(0);
            for (i, p) in payments.iter().enumerate() {
                let d = math_pow(base.f(), i as f64)?;
                let p = number(&p.val)?;
                if d == 0.0 {
                    return Err(EvalError::DivisionByZero);
                }
                value = Num::F(value.f() + p.f() / d);
            }
            Ok(match value {
                Num::I(i) => Value::Int(i),
                Num::F(x) => Value::Float(x),
            })
        }
        Func::Irr => raised("irr is not supported"),
    }
}

/// Python's ordering of two values, for max and min.
fn py_cmp(a: &Value, b: &Value) -> Result<Option<Ordering>, EvalError> {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => Ok(cmp_num(x, y)),
        _ => type_error("max or min of a tuple and a number"),
    }
}

/// An integral float as Python's `int`.
fn float_to_int(x: f64) -> Result<Value, EvalError> {
    if x.is_nan() {
        return raised("ValueError: cannot convert NaN to an integer");
    }
    if x.is_infinite() {
        return raised("OverflowError: cannot convert infinity to an integer");
    }
    let limit = 2f64.powi(127);
    Ok(if x.abs() < limit {
        Value::Int(x as i128)
    } else {
        Value::Float(x)
    })
}

/// `math.pow`, with its errors.
fn math_pow(x: f64, y: f64) -> Result<f64, EvalError> {
    if x.is_finite() && y.is_finite() {
        if x == 0.0 && y < 0.0 {
            return raised("ValueError: math domain error (0 to a negative power)");
        }
        let r = x.powf(y);
        if r.is_nan() {
            return raised("ValueError: math domain error (pow)");
        }
        if r.is_infinite() {
            return raised("OverflowError: math range error (pow)");
        }
        return Ok(r);
    }
    // Infinities and NaNs, as C99's pow (which CPython follows here).
    Ok(x.powf(y))
}

/// Python's `round(x)` and `round(x, n)`.
fn round(args: &[V]) -> Result<Value, EvalError> {
    let x = number(&args[0].val)?;
    match args.len() {
        1 => match x {
            Num::I(i) => Ok(Value::Int(i)),
            Num::F(f) => {
                if f.is_nan() {
                    return raised("ValueError: cannot convert NaN to an integer");
                }
                float_to_int(f.round_ties_even())
            }
        },
        2 => {
            let n = match &args[1].val {
                Value::Int(n) => *n,
                Value::Bool(b) => i128::from(*b),
                _ => return type_error("round's number of digits is not an integer"),
            };
            match x {
                Num::I(i) => Ok(Value::Int(round_int(i, n))),
                Num::F(f) => round_float(f, n).map(Value::Float),
            }
        }
        n => type_error(&format!("round takes 1 or 2 arguments, not {n}")),
    }
}

/// `int.__round__(n)`: half to even, at 10^-n.
fn round_int(i: i128, n: i128) -> i128 {
    if n >= 0 {
        return i;
    }
    let Some(p) = u32::try_from(-n).ok().and_then(|k| 10i128.checked_pow(k)) else {
        return 0;
    };
    let (q, r) = (i.div_euclid(p), i.rem_euclid(p));
    let up = match r.cmp(&(p - r)) {
        Ordering::Greater => true,
        Ordering::Equal => q % 2 != 0,
        Ordering::Less => false,
    };
    (q + i128::from(up)).saturating_mul(p)
}

/// `float.__round__(n)`: the exact value rounded half to even at 10^-n.
fn round_float(x: f64, n: i128) -> Result<f64, EvalError> {
    if !x.is_finite() || n > 323 || x == 0.0 {
        return Ok(x);
    }
    if n < -308 {
        return Ok(0.0 * x);
    }
    let rounded = if n >= 0 {
        // Rust prints the exact value rounded half to even.
        format!("{:.*}", n as usize, x).parse::<f64>().unwrap_or(x)
    } else {
        let k = (-n) as usize;
        let t = x.abs().trunc();
        let sticky = x.abs() != t;
        let mut digits = format!("{t:.0}");
        if digits.len() < k + 1 {
            digits = format!("{}{digits}", "0".repeat(k + 1 - digits.len()));
        }
        let (kept, dropped) = digits.split_at(digits.len() - k);
        let half = format!("5{}", "0".repeat(k - 1));
        let up = match dropped.cmp(half.as_str()) {
            Ordering::Greater => true,
            Ordering::Equal => sticky || kept.ends_with(['1', '3', '5', '7', '9']),
            Ordering::Less => false,
        };
        let mut kept: Vec<u8> = kept.bytes().collect();
        if up {
            let mut i = kept.len();
            loop {
                if i == 0 {
                    kept.insert(0, b'1');
                    break;
                }
                i -= 1;
                if kept[i] == b'9' {
                    kept[i] = b'0';
                } else {
                    kept[i] += 1;
                    break;
                }
            }
        }
        let text = format!("{}e{k}", String::from_utf8_lossy(&kept));
        let v: f64 = text.parse().unwrap_or(f64::INFINITY);
        if x < 0.0 { -v } else { v }
    };
    if rounded.is_infinite() {
        return raised("OverflowError: rounded value too large to represent");
    }
    Ok(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(source: &str, values: &[f64]) -> Result<f64, String> {
        let p = Program::compile(source, values.len()).map_err(|e| format!("syntax: {}", e.0))?;
        p.eval(values).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn the_ordinary_cases() {
        assert_eq!(eval("$1 + $2", &[500.0, 60000.0]), Ok(60500.0));
        assert_eq!(eval("$2 / 1000.0", &[0.0, 45000.0]), Ok(45.0));
        assert_eq!(eval("2 ^ 3", &[]), Ok(8.0));
        assert_eq!(eval("max(1, 7, 3)", &[]), Ok(7.0));
        assert_eq!(eval("$1 > 5 ? 1 : 0", &[6.0]), Ok(1.0));
        assert_eq!(eval("$1 > 5 ? 1 : 0", &[4.0]), Ok(0.0));
        assert_eq!(eval("pi", &[]), Ok(PI));
    }

    #[test]
    fn mathjspys_own_results() {
        // Measured with mathjspy 0.0.9 (tests/parity_expr.rs checks many more).
        assert_eq!(eval("10/4%3", &[]), Ok(10.0));
        assert_eq!(eval("round(2.5)", &[]), Ok(2.0));
        assert_eq!(eval("round(2.675, 2)", &[]), Ok(2.67));
        assert_eq!(eval("round(1250.5, 0 - 2)", &[]), Ok(1300.0));
        assert_eq!(eval("round(1350, 0 - 2)", &[]), Ok(1400.0));
        assert_eq!(eval("round(1250, 0 - 2)", &[]), Ok(1200.0));
        // `-2` after a comma: `( sub(round ( 1250.5,, 2 )) )`.
        assert!(eval("round(1250.5, -2)", &[]).is_err());
        assert_eq!(eval("1 > (2)", &[]), Ok(2.0));
        assert_eq!(eval("sqrt(9) > 2.5", &[]), Ok(1.0));
        assert_eq!(eval("log(8, 2)", &[]), Ok(3.0));
        assert_eq!(eval("sgn(0)", &[]), Ok(0.0));
        assert!(eval("sgn(2)", &[]).is_err());
        assert!(eval("sqrt(-1)", &[]).is_err());
    }

    #[test]
    fn a_caught_division_by_zero_is_an_error_unless_a_guard_drops_it() {
        assert_eq!(
            eval("$1 / $2", &[1.0, 0.0]),
            Err("DivisionByZero".to_string())
        );
        assert_eq!(eval("ifElse($2 > 0, $1 / $2, 0)", &[1.0, 0.0]), Ok(0.0));
        assert_eq!(eval("ifElse($2 > 0, $1 / $2, 0)", &[1.0, 4.0]), Ok(0.25));
    }

    #[test]
    fn what_mathjspy_cannot_read_does_not_compile() {
        for source in [
            "-$1",
            "1e-3 * $1",
            "$1 * -1",
            "$1 +",
            "y + 1",
            "not 1",
            "(1",
            "$2",
        ] {
            assert!(Program::compile(source, 1).is_err(), "{source}");
        }
    }
}
