//! Buffers of large packets (a WRITE's data, a DATA reply) kept for the
//! next ones. A new 255 KiB buffer per packet came from the allocator as
//! fresh pages: a 1 GiB upload spent 5 % of ferry's samples in page faults
//! and zeroed pages copying data into them, and ferry 16 % of its time in
//! an A/B (bench/README.md). The writer hands each WRITE's buffer back as
//! soon as the channel took it, and a DATA reply's buffer comes back when
//! its reader is done with it.
//!
//! One store for the whole process, so that the memory it keeps does not
//! grow with the number of sessions: a download's replies pile up to what
//! it keeps in flight (8 MiB) when the local disk is slower than the link,
//! and with four spares per session a 1 GiB download still took a fresh
//! buffer for most replies (3 % of its samples zeroing pages, 0.05 % with
//! room for 32).

use std::sync::{Arc, Mutex, OnceLock};

/// Buffers smaller than this are left to the allocator: a small request
/// or reply costs no page fault.
pub const LARGE: usize = 64 * 1024;

/// Buffers kept, at most: 8 MiB of 255 KiB ones, what one transfer keeps
/// in flight.
const KEPT: usize = 32;

/// Spare buffers, shared by the requests, writers and DATA replies of
/// every session that holds a clone.
#[derive(Clone, Default)]
pub struct Spares(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spares {
    /// The process's store.
    pub fn shared() -> Spares {
        static SHARED: OnceLock<Spares> = OnceLock::new();
        SHARED.get_or_init(Spares::default).clone()
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.0.lock().expect("sftp spares lock")
    }

    /// A spare buffer (its old bytes still in it), or a new empty one.
    pub fn take(&self) -> Vec<u8> {
        self.list().pop().unwrap_or_default()
    }

    /// `len` bytes to read a packet into: a spare buffer when the packet is
    /// large (its old bytes are read over, not zeroed first), else new
    /// zeroed ones.
    pub fn take_len(&self, len: usize) -> Vec<u8> {
        let mut buf = if len >= LARGE {
            self.take()
        } else {
            Vec::new()
        };
        buf.resize(len, 0);
        buf
    }

    /// Keeps `buf` for a later packet, if it is a large one and there is
    /// room.
    pub fn put(&self, buf: Vec<u8>) {
        if buf.capacity() >= LARGE {
            let mut list = self.list();
            if list.len() < KEPT {
                list.push(buf);
            }
        }
    }

    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.list().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_large_buffers_are_kept_and_only_a_few() {
        let s = Spares::default();
        s.put(Vec::with_capacity(100));
        assert_eq!(s.count(), 0);
        for _ in 0..KEPT + 3 {
            s.put(Vec::with_capacity(LARGE));
        }
        assert_eq!(s.count(), KEPT);
    }

    #[test]
    fn a_large_packet_reuses_a_spare_at_its_own_length() {
        let s = Spares::default();
        s.put(vec![7u8; LARGE * 2]);
        let buf = s.take_len(LARGE + 1);
        assert_eq!(buf.len(), LARGE + 1);
        assert!(buf.capacity() >= LARGE * 2, "the spare was used");
        assert_eq!(s.count(), 0);
        // A small packet gets a new zeroed buffer, the spare stays.
        s.put(buf);
        assert_eq!(s.take_len(10), vec![0u8; 10]);
        assert_eq!(s.count(), 1);
    }
}
