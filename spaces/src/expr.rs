//! Integer answer expressions for seeded tasks, e.g. `{a} * {b} + 3`, so a Space like
//! Math Sprint can compute the verifiable answer of every task it generates.
//!
//! Only `+`, `-`, `*`, parentheses, integer literals and `{var}` references. The limits
//! checked at parse time (at most [`MAX_OPERANDS`] operands, [`MAX_PRODUCTS`]
//! multiplications, every value within ±[`MAX_MAGNITUDE`]) bound any result below
//! (32·10⁶)⁵ ≈ 3.4·10³⁷, inside `i128`, so evaluation cannot overflow.

use std::collections::BTreeMap;

/// Largest magnitude allowed for a literal or a range bound.
pub const MAX_MAGNITUDE: i64 = 1_000_000;
/// Most operands (literals and variables) in one expression.
pub const MAX_OPERANDS: usize = 32;
/// Most multiplications in one expression.
pub const MAX_PRODUCTS: usize = 4;

/// A parsed answer expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// An integer literal.
    Literal(i64),
    /// A task variable, by name.
    Var(String),
    /// Negation.
    Neg(Box<Expr>),
    /// A binary operation.
    Binary(Op, Box<Expr>, Box<Expr>),
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Addition.
    Add,
    /// Subtraction.
    Sub,
    /// Multiplication.
    Mul,
}

impl Expr {
    /// Parses an expression and checks the size limits.
    pub(crate) fn parse(text: &str) -> Result<Expr, String> {
        let mut parser = Parser {
            chars: text.chars().collect(),
            pos: 0,
            operands: 0,
            products: 0,
        };
        let expr = parser.sum()?;
        parser.skip_space();
        if parser.pos < parser.chars.len() {
            return Err(format!(
                "unexpected `{}` at character {}",
                parser.chars[parser.pos],
                parser.pos + 1
            ));
        }
        if parser.operands > MAX_OPERANDS {
            return Err(format!("more than {MAX_OPERANDS} operands"));
        }
        if parser.products > MAX_PRODUCTS {
            return Err(format!("more than {MAX_PRODUCTS} multiplications"));
        }
        Ok(expr)
    }

    /// Names of the variables the expression reads, in order of appearance.
    pub(crate) fn vars(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_vars(&mut out);
        out
    }

    fn collect_vars<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Var(name) => out.push(name),
            Expr::Neg(inner) => inner.collect_vars(out),
            Expr::Binary(_, a, b) => {
                a.collect_vars(out);
                b.collect_vars(out);
            }
        }
    }

    /// Evaluates with integer variable values; `None` if a variable is missing or not an
    /// integer.
    pub fn eval(&self, vars: &BTreeMap<String, String>) -> Option<i128> {
        match self {
            Expr::Literal(v) => Some(i128::from(*v)),
            Expr::Var(name) => vars.get(name)?.parse::<i64>().ok().map(i128::from),
            Expr::Neg(inner) => inner.eval(vars)?.checked_neg(),
            Expr::Binary(op, a, b) => {
                let (a, b) = (a.eval(vars)?, b.eval(vars)?);
                match op {
                    Op::Add => a.checked_add(b),
                    Op::Sub => a.checked_sub(b),
                    Op::Mul => a.checked_mul(b),
                }
            }
        }
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    operands: usize,
    products: usize,
}

impl Parser {
    fn skip_space(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.chars.get(self.pos).copied()
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut left = self.product()?;
        while let Some(c @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            let op = if c == '+' { Op::Add } else { Op::Sub };
            let right = self.product()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.peek() == Some('*') {
            self.pos += 1;
            self.products += 1;
            let right = self.unary()?;
            left = Expr::Binary(Op::Mul, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some('-') {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let inner = self.sum()?;
                if self.peek() != Some(')') {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                Ok(inner)
            }
            Some('{') => {
                self.pos += 1;
                let start = self.pos;
                while self
                    .chars
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                if name.is_empty() || self.chars.get(self.pos) != Some(&'}') {
                    return Err("a variable is written `{name}`".into());
                }
                self.pos += 1;
                self.operands += 1;
                Ok(Expr::Var(name))
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.chars.get(self.pos).is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                let digits: String = self.chars[start..self.pos].iter().collect();
                let value = digits
                    .parse::<i64>()
                    .ok()
                    .filter(|v| *v <= MAX_MAGNITUDE)
                    .ok_or_else(|| format!("literal {digits} is larger than {MAX_MAGNITUDE}"))?;
                self.operands += 1;
                Ok(Expr::Literal(value))
            }
            Some(c) => Err(format!("unexpected `{c}` at character {}", self.pos + 1)),
            None => Err("the expression ends too early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn evaluates_precedence_and_parentheses() {
        let expr = Expr::parse("{a} + {b} * 2 - ({a} - 1)").unwrap();
        assert_eq!(expr.eval(&vars(&[("a", "5"), ("b", "3")])), Some(7));
        assert_eq!(expr.vars(), vec!["a", "b", "a"]);
        assert_eq!(
            Expr::parse("-{a} * -2").unwrap().eval(&vars(&[("a", "4")])),
            Some(8)
        );
    }

    #[test]
    fn rejects_bad_syntax_and_limits() {
        assert!(Expr::parse("{a} +").is_err());
        assert!(Expr::parse("({a}").is_err());
        assert!(Expr::parse("{a} / 2").is_err());
        assert!(Expr::parse("{}").is_err());
        assert!(Expr::parse("2000000").is_err());
        assert!(Expr::parse("{a}*{a}*{a}*{a}*{a}*{a}").is_err());
    }

    #[test]
    fn missing_or_non_integer_var_is_none() {
        let expr = Expr::parse("{a} + 1").unwrap();
        assert_eq!(expr.eval(&vars(&[])), None);
        assert_eq!(expr.eval(&vars(&[("a", "x")])), None);
    }

    #[test]
    fn worst_case_within_limits_does_not_overflow() {
        let expr = Expr::parse("({a}+{a}+{a}+{a}+{a}+{a})*({a}+{a}+{a}+{a}+{a}+{a})*({a}+{a}+{a}+{a}+{a}+{a})*({a}+{a}+{a}+{a}+{a})*({a}+{a}+{a}+{a}+{a})").unwrap();
        let value = expr.eval(&vars(&[("a", "1000000")])).unwrap();
        assert_eq!(value, 6i128.pow(3) * 5i128.pow(2) * 10i128.pow(30));
    }
}
