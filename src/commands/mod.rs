//! One module per subcommand group.

pub mod arena;
pub mod bench;
pub mod bench_arena;
pub mod bench_learning;
pub mod bench_scale;
pub mod bench_web;
pub mod chain_cmd;
pub mod db;
pub mod generate;
pub mod judges;
pub mod models;
pub mod roles;
pub mod web;
