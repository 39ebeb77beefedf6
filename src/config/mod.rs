//! Service configuration: the seed's YAML shape plus `server`, `rules` and `state`.
//!
//! Loaded in layers (file, then `KAFKA_HEALING__SECTION__KEY` environment variables, then
//! `${NAME}` references and `*_file` secrets) by [`load`], checked by [`validate`].
//! Unknown keys are errors everywhere.

mod alertmanager;
mod expand;
mod kubernetes;
mod load;
mod model;
mod node;
mod secret;
mod security;
mod seed;
mod validate;

pub use alertmanager::AlertmanagerConfig;
pub use expand::{ExpandError, expand_env};
pub use kubernetes::KubernetesConfig;
pub use load::{ENV_PREFIX, LoadError, Loaded, load, load_text, load_with_env};
pub use model::*;
pub use node::deserialize_at;
pub use secret::Secret;
pub use security::{SaslConfig, SaslMechanism, SecurityConfig, SslConfig};
pub use validate::valid_email;
