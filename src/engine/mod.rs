//! The engine: from an alert to a decision, and from a decision to a run.
//!
//! [`plan`] is the pure decision path `dry-run` and `serve` share; [`policy`] is the part
//! of the policy that needs history (cooldown, attempts, circuits); [`runtime`] is the
//! service's single decision loop, and [`execute`] runs one execution's steps.

pub mod execute;
pub mod plan;
pub mod policy;
pub mod report;
pub mod runtime;
pub mod seen;
pub mod target;

pub use plan::{Decision, Plan, PlanSet, WorkKey, plan_alert, plan_payload, render_context};
pub use runtime::{Engine, EngineHandle, Setup};
pub use target::find_target;
