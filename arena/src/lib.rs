//! The RLFC Arena platform core: the match world (bevy_ecs), the event bus, ratings
//! and matchmaking; settlement and preference pairs land next.

pub mod bus;
pub mod engine;
pub mod events;
pub mod judging;
pub mod matchmaking;
pub mod ratings;
pub mod record;
pub mod world;
