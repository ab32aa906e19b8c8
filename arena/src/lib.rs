//! The RLFC Arena platform core: the match world (bevy_ecs) with cross-match batched
//! generation, the runtime engine over the agents' batched decoder, the event bus,
//! Weng-Lin ratings and matchmaking, the match book (payouts, preference pairs, result
//! root), payments through the Arena contract, the match-job queue (in-process or
//! Redis Streams), the runner that ties them together, and the learning loop with its
//! benchmark.

pub mod bus;
pub mod demo;
pub mod engine;
pub mod events;
pub mod jobs;
pub mod judging;
pub mod learning;
pub mod learning_bench;
pub mod match_worker;
pub mod matchmaker;
pub mod matchmaking;
pub mod metrics;
pub mod payments;
pub mod ratings;
pub mod record;
pub mod redis_setup;
pub mod redis_testing;
pub mod replay;
pub mod runner;
pub mod runtime;
pub mod world;
