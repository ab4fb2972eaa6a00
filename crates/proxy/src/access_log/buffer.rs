//! The request log's output: each thread's buffer of lines and the flusher thread that writes them.

use std::io::Write as _;
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};
use std::time::Duration;

/// How often the flusher thread writes the workers' lines.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A worker writes its lines itself once they pass this many bytes.
pub const FLUSH_AT: usize = 64 * 1024;

/// Every thread's buffer, for the flusher.
static BUFFERS: Mutex<Vec<Weak<Mutex<Vec<u8>>>>> = Mutex::new(Vec::new());
static FLUSHER: Once = Once::new();

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One thread's lines; written when the thread ends.
pub(super) struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    pub(super) fn register() -> Buffer {
        let lines = Arc::new(Mutex::new(Vec::with_capacity(FLUSH_AT)));
        lock(&BUFFERS).push(Arc::downgrade(&lines));
        FLUSHER.call_once(|| {
            let started = std::thread::Builder::new()
                .name("sluice-access-log".into())
                .spawn(flusher);
            if let Err(error) = started {
                tracing::error!(%error, "cannot start the request log's writer; lines are written when a buffer fills");
            }
        });
        Buffer(lines)
    }

    pub(super) fn append(&self, line: &[u8]) {
        let mut lines = lock(&self.0);
        lines.extend_from_slice(line);
        if lines.len() >= FLUSH_AT {
            write_out(&lines);
            lines.clear();
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut lines = lock(&self.0);
        write_out(&lines);
        lines.clear();
    }
}

fn write_out(lines: &[u8]) {
    if !lines.is_empty() {
        let _ = std::io::stdout().lock().write_all(lines);
    }
}

/// Writes every thread's lines every [`FLUSH_EVERY`], swapping each buffer for a spare one so
/// that no worker waits for standard output.
fn flusher() {
    let mut spare = Vec::with_capacity(FLUSH_AT);
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let buffers: Vec<Arc<Mutex<Vec<u8>>>> = {
            let mut all = lock(&BUFFERS);
            all.retain(|b| b.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        for buffer in buffers {
            std::mem::swap(&mut *lock(&buffer), &mut spare);
            write_out(&spare);
            spare.clear();
        }
    }
}
