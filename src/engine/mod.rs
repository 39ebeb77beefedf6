//! The engine: from an alert to a decision. `dry-run` and `serve` share this one path.

pub mod plan;
pub mod target;

pub use plan::{Decision, Plan, PlanSet, plan_alert, plan_payload, render_context};
pub use target::find_target;
