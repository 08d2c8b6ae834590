//! Builds the SCIM-style `filter` query values Connect understands.

/// A filter expression for `?filter=`. Values are always double-quoted and escaped;
/// the client percent-encodes the whole expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter(String);

impl Filter {
    /// `title eq "…"` for items (case-insensitive on the server).
    pub fn title_eq(title: &str) -> Self {
        Self::compare("title", "eq", title)
    }

    /// `name eq "…"` for vaults.
    pub fn name_eq(name: &str) -> Self {
        Self::compare("name", "eq", name)
    }

    /// `tag eq "…"`: items carrying this tag.
    pub fn tag_eq(tag: &str) -> Self {
        Self::compare("tag", "eq", tag)
    }

    /// `title co "…"`: titles containing the text.
    pub fn title_contains(text: &str) -> Self {
        Self::compare("title", "co", text)
    }

    /// Any comparison, for attributes and operators not covered above.
    pub fn compare(attribute: &str, operator: &str, value: &str) -> Self {
        Self(format!("{attribute} {operator} {}", quote(value)))
    }

    pub fn or(self, other: Filter) -> Self {
        Self(format!("({}) or ({})", self.0, other.0))
    }

    pub fn and(self, other: Filter) -> Self {
        Self(format!("({}) and ({})", self.0, other.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SCIM string literal: `"` and `\` escaped with a backslash.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_escapes_values() {
        assert_eq!(
            Filter::title_eq("My \"db\" \\ prod").as_str(),
            r#"title eq "My \"db\" \\ prod""#
        );
        assert_eq!(
            Filter::name_eq("Prod").or(Filter::name_eq("Dev")).as_str(),
            r#"(name eq "Prod") or (name eq "Dev")"#
        );
    }
}
