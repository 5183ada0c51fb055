//! Event ids. The domain never makes ids; the application draws them here.

use std::sync::atomic::{AtomicU64, Ordering};

/// A source of event and command ids.
pub trait IdSource: Send + Sync + std::fmt::Debug {
    fn next_id(&self) -> uuid::Uuid;
}

/// UUIDv7 from the system clock and randomness: time-ordered, unique.
#[derive(Debug, Default, Clone, Copy)]
pub struct V7Ids;

impl IdSource for V7Ids {
    fn next_id(&self) -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}

/// Deterministic UUIDv7-shaped ids (a fixed millisecond base and a counter),
/// for golden files and tests that must print the same bytes every run.
#[derive(Debug)]
pub struct SequentialIds {
    base_ms: u64,
    counter: AtomicU64,
}

impl SequentialIds {
    pub fn new(base_ms: u64) -> Self {
        Self { base_ms, counter: AtomicU64::new(0) }
    }
}

impl IdSource for SequentialIds {
    fn next_id(&self) -> uuid::Uuid {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let ms = self.base_ms + n / 4096;
        let seq = (n % 4096) as u16;
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        bytes[6] = 0x70 | ((seq >> 8) as u8 & 0x0f);
        bytes[7] = seq as u8;
        bytes[8] = 0x80;
        bytes[8..16].copy_from_slice(&(0x8000_0000_0000_0000u64 | n).to_be_bytes());
        uuid::Uuid::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_are_v7_distinct_and_ordered() {
        let ids = SequentialIds::new(1_700_000_000_000);
        let a = ids.next_id();
        let b = ids.next_id();
        assert_eq!(a.get_version_num(), 7);
        assert_ne!(a, b);
        assert!(a < b);
    }
}
