//! How full the kernel ring buffer is, read from its position pages. A BPF ring buffer map
//! exposes the consumer position (page 0) and the producer position (page 1) to any process
//! that maps them; a second, read-only mapping reads both without touching the reader's.
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
    sync::atomic::{AtomicU64, Ordering},
};

pub struct RingFill {
    map: *mut libc::c_void,
    page: usize,
    size: u64,
}

// SAFETY: the mapping is read-only, lives as long as the value, and is only read with
// atomic loads.
unsafe impl Send for RingFill {}
// SAFETY: as for Send: shared references only ever load atomically from a read-only mapping.
unsafe impl Sync for RingFill {}

impl RingFill {
    /// Maps the position pages of the ring buffer map `fd` of `size` bytes.
    pub fn new(fd: BorrowedFd<'_>, size: u32) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a fresh shared read-only mapping of two pages of the map; the kernel checks
        // the offset and length against the map.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RingFill {
            map,
            page,
            size: u64::from(size),
        })
    }

    fn position(&self, page: usize) -> u64 {
        // SAFETY: the kernel keeps each position as an aligned u64 at the start of its page,
        // inside our live mapping; it is written concurrently, hence the atomic load.
        unsafe {
            (*(self.map.cast::<u8>().add(page * self.page) as *const AtomicU64))
                .load(Ordering::Acquire)
        }
    }

    /// Bytes the kernel wrote that the agent has not consumed yet.
    pub fn used(&self) -> u64 {
        let consumer = self.position(0);
        let producer = self.position(1);
        producer.saturating_sub(consumer).min(self.size)
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe {
            libc::munmap(self.map, 2 * self.page);
        }
    }
}
