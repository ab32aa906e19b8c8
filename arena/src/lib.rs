//! What a match is, with no I/O: its input and output types, the bevy_ecs world that
//! plays every live match with cross-match batched generation and judging, the engine
//! and judge traits the world drives, the booking of a finished match (payout split,
//! preference pairs, ratings, result root), Weng-Lin ratings, matchmaking and the match
//! events. The services that feed and settle matches (storage, chain, bus, queues, the
//! runtime engine, learning) live in the `platform` crate.

pub mod engine;
pub mod events;
pub mod judging;
pub mod matchmaking;
pub mod ratings;
pub mod record;
pub mod types;
pub mod world;
