//! `${NAME}` references in configuration strings, replaced from the environment.

/// A `${…}` reference that could not be replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// The variable is not set.
    #[error(
        "environment variable `{0}` is not set (referenced as ${{{0}}}; write $${{ for a literal ${{)"
    )]
    Unset(String),
    /// `${` without a closing `}` or with an invalid name.
    #[error(
        "malformed reference `{0}`: expected ${{NAME}} with NAME made of letters, digits and _"
    )]
    Malformed(String),
}

/// Replaces every `${NAME}` in `input` using `lookup`; `$${` stands for a literal `${`.
pub fn expand_env(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    if !input.contains("${") {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                return Err(ExpandError::Malformed(after.to_string()));
            };
            let name = &tail[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ExpandError::Malformed(format!("${{{name}}}")));
            }
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => return Err(ExpandError::Unset(name.to_string())),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER_1" => Some("alice".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_and_escapes() {
        assert_eq!(expand_env("plain $HOME", env).unwrap(), "plain $HOME");
        assert_eq!(expand_env("u=${USER_1}!", env).unwrap(), "u=alice!");
        assert_eq!(
            expand_env("${USER_1}${EMPTY}${USER_1}", env).unwrap(),
            "alicealice"
        );
        assert_eq!(expand_env("lit $${USER_1}", env).unwrap(), "lit ${USER_1}");
        assert_eq!(expand_env("cost $5", env).unwrap(), "cost $5");
    }

    #[test]
    fn unset_names_the_variable() {
        let err = expand_env("${NOPE_X}", env).unwrap_err();
        assert_eq!(err, ExpandError::Unset("NOPE_X".into()));
        assert!(err.to_string().contains("NOPE_X"));
    }

    #[test]
    fn malformed_references() {
        assert!(matches!(
            expand_env("${OPEN", env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand_env("${}", env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand_env("${A-B}", env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand_env("${1A}", env),
            Err(ExpandError::Malformed(_))
        ));
    }
}
