//! Storage for RLFC Arena.
