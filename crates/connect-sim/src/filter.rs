//! SCIM-style `?filter=` expressions, as Connect understands them.
//!
//! Grammar: `expr := term ("or" term)*`, `term := factor ("and" factor)*`,
//! `factor := "not" factor | "(" expr ")" | attr "pr" | attr op "value"`,
//! `op := eq | ne | co | sw | ew`. Keywords and attributes are case-insensitive; values must
//! be double-quoted (`\"` and `\\` escapes); comparisons ignore case, as on the real server.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
}

impl Op {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "co" => Self::Co,
            "sw" => Self::Sw,
            "ew" => Self::Ew,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Co => "co",
            Self::Sw => "sw",
            Self::Ew => "ew",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `attr op "value"`; `attr` is stored lower-case.
    Compare {
        attr: String,
        op: Op,
        value: String,
    },
    /// `attr pr`: the attribute has a non-empty value.
    Present {
        attr: String,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// Why a filter was refused; becomes a 400 message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid filter: {}", self.0)
    }
}

/// Something a filter can be evaluated on: the values of an attribute (several for tags).
pub trait Filterable {
    fn values(&self, attr: &str) -> Vec<&str>;
}

impl Expr {
    pub fn matches(&self, target: &impl Filterable) -> bool {
        match self {
            Self::Compare { attr, op, value } => {
                let wanted = value.to_lowercase();
                let values = target.values(attr);
                let hit = |v: &&str| {
                    let v = v.to_lowercase();
                    match op {
                        Op::Eq | Op::Ne => v == wanted,
                        Op::Co => v.contains(&wanted),
                        Op::Sw => v.starts_with(&wanted),
                        Op::Ew => v.ends_with(&wanted),
                    }
                };
                // `ne` holds when no value equals; for multi-valued attributes SCIM says
                // "any value matches" for the others.
                if *op == Op::Ne {
                    !values.iter().any(hit)
                } else {
                    values.iter().any(hit)
                }
            }
            Self::Present { attr } => target.values(attr).iter().any(|v| !v.is_empty()),
            Self::And(a, b) => a.matches(target) && b.matches(target),
            Self::Or(a, b) => a.matches(target) || b.matches(target),
            Self::Not(e) => !e.matches(target),
        }
    }
}

impl fmt::Display for Expr {
    /// Renders a canonical, fully parenthesized form that parses back to the same tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Compare { attr, op, value } => {
                write!(
                    f,
                    "{attr} {} {}",
                    op.as_str(),
                    onepassword_connect::filter::quote(value)
                )
            }
            Self::Present { attr } => write!(f, "{attr} pr"),
            Self::And(a, b) => write!(f, "({a}) and ({b})"),
            Self::Or(a, b) => write!(f, "({a}) or ({b})"),
            Self::Not(e) => write!(f, "not ({e})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
    Str(String),
}

fn tokenize(input: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err(FilterError("unterminated string".into())),
                        },
                        Some(other) => value.push(other),
                        None => return Err(FilterError("unterminated string".into())),
                    }
                }
                tokens.push(Token::Str(value));
            }
            '\'' => return Err(FilterError("values must be enclosed in double quotes".into())),
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '"' | '\'') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

/// Deepest nesting of parentheses and `not` accepted: the parser and the evaluator recurse
/// once per level, so an unbounded depth would let one request overflow the stack.
pub const MAX_DEPTH: usize = 400;

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    attributes: &'a [&'a str],
    depth: usize,
}

/// Parses a filter, accepting only the given attributes (lower-case names).
pub fn parse(input: &str, attributes: &[&str]) -> Result<Expr, FilterError> {
    let tokens = tokenize(input)?;
    if tokens.is_empty() {
        return Err(FilterError("empty expression".into()));
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        attributes,
        depth: 0,
    };
    let expr = parser.or()?;
    match parser.tokens.get(parser.pos) {
        None => Ok(expr),
        Some(token) => Err(FilterError(format!(
            "unexpected {} after the expression",
            describe(token)
        ))),
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
        Token::Word(w) => format!("{w:?}"),
        Token::Str(s) => format!("string {s:?}"),
    }
}

impl Parser<'_> {
    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.peek_keyword("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.factor()?;
        while self.peek_keyword("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    /// Runs `inner` one nesting level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested<T>(&mut self, inner: impl FnOnce(&mut Self) -> Result<T, FilterError>) -> Result<T, FilterError> {
        if self.depth >= MAX_DEPTH {
            return Err(FilterError(format!(
                "the expression nests parentheses and 'not' more than {MAX_DEPTH} levels deep"
            )));
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }

    fn factor(&mut self) -> Result<Expr, FilterError> {
        match self.next() {
            Some(Token::Open) => {
                let inner = self.nested(Self::or)?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err(FilterError("missing ')'".into())),
                }
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("not") => {
                Ok(Expr::Not(Box::new(self.nested(Self::factor)?)))
            }
            Some(Token::Word(attr)) => {
                let attr = attr.to_ascii_lowercase();
                if !self.attributes.contains(&attr.as_str()) {
                    return Err(FilterError(format!(
                        "unsupported attribute {attr:?}; expected one of {}",
                        self.attributes.join(", ")
                    )));
                }
                match self.next() {
                    Some(Token::Word(op)) if op.eq_ignore_ascii_case("pr") => Ok(Expr::Present { attr }),
                    Some(Token::Word(op)) => {
                        let op = Op::parse(&op).ok_or_else(|| FilterError(format!("unsupported operator {op:?}")))?;
                        match self.next() {
                            Some(Token::Str(value)) => Ok(Expr::Compare { attr, op, value }),
                            Some(other) => Err(FilterError(format!(
                                "expected a double-quoted value after {:?}, found {}",
                                op.as_str(),
                                describe(&other)
                            ))),
                            None => Err(FilterError(format!("missing value after {:?}", op.as_str()))),
                        }
                    }
                    Some(other) => Err(FilterError(format!("expected an operator, found {}", describe(&other)))),
                    None => Err(FilterError(format!("missing operator after {attr:?}"))),
                }
            }
            Some(other) => Err(FilterError(format!(
                "expected an attribute, found {}",
                describe(&other)
            ))),
            None => Err(FilterError("unexpected end of expression".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_with_a_message_instead_of_overflowing_the_stack() {
        for hostile in [
            format!("{}title eq \"a\"{}", "(".repeat(2000), ")".repeat(2000)),
            format!("{}title eq \"a\"", "not ".repeat(5000)),
        ] {
            let err = parse(&hostile, &["title"]).unwrap_err();
            assert!(err.0.contains("more than 400 levels deep"), "{}", err.0);
        }
        let deepest = format!("{}title eq \"a\"{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&deepest, &["title"]).is_ok());
    }
    use proptest::prelude::*;

    struct Thing {
        title: String,
        tags: Vec<String>,
    }

    fn thing(title: &str, tags: &[&str]) -> Thing {
        Thing {
            title: title.to_owned(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    impl Filterable for Thing {
        fn values(&self, attr: &str) -> Vec<&str> {
            match attr {
                "title" => vec![self.title.as_str()],
                "tag" => self.tags.iter().map(String::as_str).collect(),
                _ => vec![],
            }
        }
    }

    const ATTRS: &[&str] = &["title", "tag"];

    fn check(filter: &str, thing: &Thing) -> bool {
        parse(filter, ATTRS).unwrap().matches(thing)
    }

    #[test]
    fn comparisons_ignore_case() {
        let db = thing("Prod Database", &["db", "Prod"]);
        assert!(check(r#"title eq "prod database""#, &db));
        assert!(check(r#"TITLE EQ "PROD DATABASE""#, &db));
        assert!(check(r#"title co "data""#, &db));
        assert!(check(r#"title sw "prod""#, &db));
        assert!(check(r#"title ew "BASE""#, &db));
        assert!(!check(r#"title eq "prod""#, &db));
        assert!(check(r#"title ne "prod""#, &db));
        assert!(check(r#"tag eq "prod""#, &db), "any tag matching is enough");
        assert!(!check(r#"tag ne "db""#, &db));
        assert!(check("tag pr", &db));
        assert!(!check("tag pr", &thing("x", &[])));
    }

    #[test]
    fn boolean_logic_and_precedence() {
        let db = thing("a", &["x"]);
        assert!(
            check(r#"title eq "a" or title eq "b" and tag eq "nope""#, &db),
            "and binds tighter"
        );
        assert!(!check(r#"(title eq "a" or title eq "b") and tag eq "nope""#, &db));
        assert!(check(r#"not (title eq "b")"#, &db));
        assert!(check(r#"title eq "b" OR tag eq "X""#, &db));
    }

    #[test]
    fn escapes_in_values() {
        let thing = thing(r#"say "hi" \o/"#, &[]);
        assert!(check(r#"title eq "say \"hi\" \\o/""#, &thing));
    }

    #[test]
    fn malformed_filters_are_refused_with_a_reason() {
        for (input, reason) in [
            ("title eq 'x'", "double quotes"),
            ("title eq x", "double-quoted value"),
            (r#"name eq "x""#, "unsupported attribute"),
            (r#"title gt "x""#, "unsupported operator"),
            (r#"title eq "x"#, "unterminated"),
            (r#"(title eq "x""#, "missing ')'"),
            (r#"title eq "x" title"#, "unexpected"),
            ("", "empty"),
            ("title", "missing operator"),
            (r#"title eq "a" or"#, "unexpected end"),
        ] {
            let err = parse(input, ATTRS).unwrap_err();
            assert!(err.to_string().contains(reason), "{input:?}: {err}");
        }
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        let attr = prop::sample::select(vec!["title".to_owned(), "tag".to_owned()]);
        let op = prop::sample::select(vec![Op::Eq, Op::Ne, Op::Co, Op::Sw, Op::Ew]);
        let leaf = prop_oneof![
            (attr.clone(), op, "\\PC{0,12}").prop_map(|(attr, op, value)| Expr::Compare { attr, op, value }),
            attr.prop_map(|attr| Expr::Present { attr }),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|e| Expr::Not(Box::new(e))),
            ]
        })
    }

    proptest! {
        #[test]
        fn rendered_expressions_parse_back_to_the_same_tree(expr in arb_expr()) {
            let rendered = expr.to_string();
            prop_assert_eq!(parse(&rendered, ATTRS).unwrap(), expr);
        }

        #[test]
        fn arbitrary_input_never_panics(input in "\\PC{0,64}") {
            let _ = parse(&input, ATTRS);
        }

        #[test]
        fn client_built_filters_match_exactly_their_title(title in "\\PC{1,20}", other in "\\PC{1,20}") {
            let filter = onepassword_connect::Filter::title_eq(&title);
            let expr = parse(filter.as_str(), ATTRS).unwrap();
            prop_assert!(expr.matches(&thing(&title, &[])));
            if other.to_lowercase() != title.to_lowercase() {
                prop_assert!(!expr.matches(&thing(&other, &[])));
            }
        }
    }
}
