//! One module per subcommand group.

pub mod db;
pub mod models;
