//! The children's environment: an allowlist of the service's own variables, plus extras.

use std::ffi::OsString;

/// Variables passed through to children, by exact name.
pub const ENV_ALLOWLIST: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "SSH_AUTH_SOCK",
    "KUBECONFIG",
];

/// Variables passed through to children, by name prefix.
pub const ENV_ALLOWED_PREFIX: &str = "ANSIBLE_";

/// `PATH` for children when the service has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The complete environment for children: the service's environment filtered to
/// [`ENV_ALLOWLIST`] and [`ENV_ALLOWED_PREFIX`], then `extra` (which wins over a variable of
/// the same name). See [`filter_env`].
pub fn child_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    filter_env(std::env::vars_os(), extra)
}

/// [`child_env`] over the given variables instead of the service's own.
///
/// Sorted by name, one entry per name. `PATH` is [`DEFAULT_PATH`] when absent. Entries no
/// child could receive are dropped: names that are empty or hold `=` or NUL, values that hold
/// NUL, and (from `vars`) anything that is not UTF-8.
pub fn filter_env<I>(vars: I, extra: &[(String, String)]) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut env = std::collections::BTreeMap::new();
    for (k, v) in vars {
        let (Ok(k), Ok(v)) = (k.into_string(), v.into_string()) else {
            continue;
        };
        if (ENV_ALLOWLIST.contains(&k.as_str()) || k.starts_with(ENV_ALLOWED_PREFIX))
            && valid(&k, &v)
        {
            env.insert(k, v);
        }
    }
    env.entry("PATH".to_string())
        .or_insert_with(|| DEFAULT_PATH.to_string());
    for (k, v) in extra {
        if valid(k, v) {
            env.insert(k.clone(), v.clone());
        } else {
            tracing::warn!(name = %k.escape_debug(), "environment variable dropped: invalid name or value");
        }
    }
    env.into_iter().collect()
}

fn valid(name: &str, value: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0']) && !value.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn filters_and_adds() {
        let vars = os(&[
            ("HOME", "/home/x"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("ANSIBLE_CONFIG", "/etc/a.cfg"),
            ("PATHX", "no"),
            ("TZ", "UTC"),
        ]);
        let extra = vec![
            ("KAFKA_HEALING_RULE".to_string(), "r".to_string()),
            ("TZ".to_string(), "Europe/Paris".to_string()),
            ("BAD=NAME".to_string(), "x".to_string()),
            ("NUL".to_string(), "a\0b".to_string()),
        ];
        let env = filter_env(vars, &extra);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["ANSIBLE_CONFIG", "HOME", "KAFKA_HEALING_RULE", "PATH", "TZ"]
        );
        assert!(env.contains(&("PATH".into(), DEFAULT_PATH.into())));
        assert!(env.contains(&("TZ".into(), "Europe/Paris".into())));
    }

    #[test]
    fn keeps_path() {
        let env = filter_env(os(&[("PATH", "/opt/bin")]), &[]);
        assert_eq!(env, vec![("PATH".to_string(), "/opt/bin".to_string())]);
    }
}
