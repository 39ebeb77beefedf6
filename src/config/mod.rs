//! Service configuration: the seed's YAML shape plus `server`, `rules` and `state`.
//!
//! Loaded in layers (files deep-merged in order, the `config/<environment>.yaml` overlay,
//! then `KAFKA_HEALING__SECTION__KEY` environment variables, then `${NAME}` references and
//! `*_file` secrets) by [`load_files`], checked by [`validate`].
//! Unknown keys are errors everywhere.

mod alertmanager;
mod expand;
mod explain;
mod kubernetes;
mod layers;
mod load;
mod model;
mod node;
mod overlay;
mod secret;
mod security;
mod seed;
mod validate;

pub use alertmanager::AlertmanagerConfig;
pub use expand::{ExpandError, expand_env};
pub use explain::{ExplainError, Explanation, Place, Source, explain};
pub use kubernetes::KubernetesConfig;
pub use layers::{ENV_PREFIX, Layer};
pub use load::{
    LoadError, Loaded, Provenance, load, load_files, load_files_with_env, load_text, load_with_env,
};
pub use model::*;
pub use node::deserialize_at;
pub use secret::Secret;
pub use security::{SaslConfig, SaslMechanism, SecurityConfig, SslConfig};
pub use validate::valid_email;
