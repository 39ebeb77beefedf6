//! Email notifications: composing messages, the durable outbox, and SMTP delivery.

pub mod message;
pub mod sender;
pub mod smtp;
