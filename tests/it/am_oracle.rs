//! Differential tests against Alertmanager's own matcher and fingerprint code (filled in separately).
