//! The RLFC Arena platform core: ratings, matchmaking, and (as they land) the match
//! world, settlement and preference pairs.

pub mod matchmaking;
pub mod ratings;
