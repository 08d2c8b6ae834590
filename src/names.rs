//! Kubernetes object names the operator derives: the Secret name that an `item-name`
//! annotation stands for, as 1Password's Go operator derives it.

/// Longest Secret name (a DNS-1123 subdomain).
pub(crate) const MAX_NAME_LENGTH: usize = 253;

/// A DNS-1123 subdomain: what Secret names must be.
pub(crate) fn is_valid_secret_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    !name.is_empty() && name.len() <= MAX_NAME_LENGTH && name.split('.').all(label_ok)
}

/// Go's Secret-name sanitization for the `item-name` annotation: a valid name is kept;
/// otherwise lower-cased, runs of characters outside `[a-z0-9-.]` become `-`, cut to 253,
/// and `-`/`.` trimmed at both ends.
pub(crate) fn sanitize_secret_name(name: &str) -> String {
    if is_valid_secret_name(name) {
        return name.to_owned();
    }
    let lower = name.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    let mut in_run = false;
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    out.truncate(MAX_NAME_LENGTH);
    out.trim_matches(|c| c == '-' || c == '.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn secret_names_are_sanitized_like_go() {
        assert_eq!(sanitize_secret_name("my-secret"), "my-secret");
        assert_eq!(sanitize_secret_name("My Secret!"), "my-secret");
        assert_eq!(sanitize_secret_name("--a__b.."), "a-b");
        assert_eq!(sanitize_secret_name("db.prod"), "db.prod");
        assert_eq!(sanitize_secret_name(&"X".repeat(300)).len(), 253);
        assert!(is_valid_secret_name("a.b-c"));
        assert!(!is_valid_secret_name("A"));
        assert!(!is_valid_secret_name("a..b"));
    }

    proptest! {
        #[test]
        fn sanitized_secret_names_are_valid_or_empty(name in "\\PC{0,300}") {
            let sanitized = sanitize_secret_name(&name);
            prop_assert!(sanitized.is_empty() || sanitized.len() <= 253);
            prop_assert!(!sanitized.starts_with(['-', '.']) && !sanitized.ends_with(['-', '.']));
        }
    }
}
