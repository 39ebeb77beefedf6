//! The engine: from an alert to a decision, and from a decision to a run.
//!
//! - [`plan`]: the pure planning `dry-run`, `test` and `serve` share (which rules match an
//!   alert, what their runbooks would run);
//! - [`decide`]: the pure decision core of `serve` (the whole policy, as a state machine
//!   returning [`effect`]s), with [`policy`] (cooldown, attempts, circuits), [`seen`] (skip
//!   dedup) and [`why`] (every reason as a type);
//! - [`runner`]: the async shell that commits each round's decisions, then carries them
//!   out; [`handle`] is how the rest of the service talks to it, and [`admission`] the
//!   room the webhook checks before it journals;
//! - [`execute`]: runs one execution's steps; [`report`]: the messages about it;
//! - [`setup`]: configuration and rules, swapped whole on reload; [`restore`]: the policy
//!   state read back at start-up; [`target`]: which broker an alert is about;
//! - [`pause`]: an operator's "hands off" (its types and input checks; the core decides
//!   what it does).

pub mod admission;
pub mod decide;
pub mod effect;
pub mod execute;
pub mod handle;
pub mod pause;
pub mod peers;
pub mod plan;
pub mod policy;
pub mod report;
pub mod restore;
pub mod runner;
pub mod seen;
pub mod setup;
pub mod target;
pub mod why;

pub use handle::{AlertSink, EngineHandle};
pub use plan::{Decision, Plan, PlanSet, WorkKey, plan_alert, plan_payload, render_context};
pub use runner::Engine;
pub use setup::{Setup, SetupCell};
pub use target::{
    Kinds, Target, TargetError, find_node, find_target, zookeeper_id, zookeeper_name,
};
