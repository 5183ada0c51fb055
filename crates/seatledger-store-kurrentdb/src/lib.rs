//! Filled in by the KurrentDB backend work.
