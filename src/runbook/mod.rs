//! Runbooks: templates, and steps lowered to the exact argv (or request) they run.

pub mod exec;
pub mod precondition;
pub mod render;
pub mod steps;
pub mod template;

pub use render::{RenderedStep, StepError, display_arg};
pub use steps::render_steps;
pub use template::{Scope, TemplateError, Templates};
