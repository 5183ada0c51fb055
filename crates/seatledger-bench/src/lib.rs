//! The benchmark suite of seatledger.
//!
//! - [`gen`]: a seeded, deterministic workload generator that writes command
//!   JSON Lines (`seatledger apply` reads them);
//! - [`load`]: writing those commands straight into a store: decided with the
//!   domain's own `decide`, appended with an exact expected version each;
//! - [`rng`]: the seeded PRNG both use (no clock, no OS entropy).
//!
//! The runner itself (`seatledger-bench run`) lives in the binary.

#![forbid(unsafe_code)]

pub mod gen;
pub mod load;
pub mod rng;
