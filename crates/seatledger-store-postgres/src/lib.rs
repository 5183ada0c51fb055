//! Filled in by the PostgreSQL backend work.
