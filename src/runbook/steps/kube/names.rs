//! Kubernetes object names: the only shape an alert's value may take on its way into an
//! API path (checked when a step is lowered, and again when it runs).

/// A value that is not a Kubernetes object name; it carries the value as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a DNS-1123 label (a namespace).
    #[error(
        "`{}` is not a DNS-1123 label (at most 63 of a-z, 0-9 and `-`, \
         starting and ending with a letter or digit)",
        .0.escape_debug()
    )]
    Label(String),
    /// Not a DNS-1123 subdomain (a pod or StatefulSet name).
    #[error(
        "`{}` is not a DNS-1123 name (at most 253 of a-z, 0-9, `-` and `.`, \
         each part starting and ending with a letter or digit)",
        .0.escape_debug()
    )]
    Subdomain(String),
}

/// Checks a DNS-1123 label (namespaces): 1 to 63 of `a-z`, `0-9`, `-`, starting and ending
/// with a letter or digit.
pub fn dns1123_label(s: &str) -> Result<(), NameError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NameError::Label(s.to_string()))
    }
}

/// Checks a DNS-1123 subdomain (pod and StatefulSet names): at most 253 characters,
/// DNS-1123 labels joined by `.`.
pub fn dns1123_subdomain(s: &str) -> Result<(), NameError> {
    let ok = !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| dns1123_label(l).is_ok());
    if ok {
        Ok(())
    } else {
        Err(NameError::Subdomain(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_names() {
        for ok in ["kafka", "kafka-0", "a", "0abc", &"a".repeat(63)] {
            assert_eq!(dns1123_label(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in [
            "", "Kafka", "-a", "a-", "a.b", "a_b", "a/b", "a b", "ä", &long,
        ] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        assert_eq!(dns1123_subdomain("kafka-0.kafka-headless"), Ok(()));
        for bad in ["a..b", ".a", "a.", "../x", "a\nb", &"a.".repeat(127)] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }
}
