//! The services that feed and settle the match core (`arena`): the composition root
//! ([`Platform`], [`BaseModels`]) with its configuration sections, the runners (the
//! serve side's matchmaker, the worker side's match worker, and the single-process
//! runner), the runtime engine over the agents' batched decoder, payments through the
//! Arena contract and their reconciliation, the learning loop (trainer, scheduler,
//! verification, the regression gate), the event bus and the match-job queue (in-process
//! or Redis Streams), metrics, replay, the demo, and the two roles of a scaled-out
//! deployment (`roles`: serve and worker).

pub mod base_models;
pub mod bus;
pub mod config;
pub mod demo;
pub mod jobs;
pub mod learning;
pub mod match_worker;
pub mod matchmaker;
mod metrics;
mod outbox;
pub mod payments;
pub mod platform;
pub mod play;
pub mod redis_setup;
pub mod replay;
pub mod roles;
pub mod runner;
pub mod runtime;

pub use config::PlatformConfig;
pub use platform::{BaseModels, Platform};
