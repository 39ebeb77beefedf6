//! Alertmanager silences honoured by the self-watch.
