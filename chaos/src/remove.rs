//! Removing things the kernel lets go of only a moment after their last user exits.

use std::path::Path;
use std::time::Duration;

use crate::error::{LabError, Result};

/// Attempts before giving up: 50 × 100 ms.
const ATTEMPTS: u32 = 50;

/// Runs `remove(path)` until it succeeds or the path is gone, retrying for about five
/// seconds (EBUSY from a cgroup whose last task is still exiting, a mount that outlives
/// its namespace for a moment).
pub(crate) fn remove_retrying(
    what: &'static str,
    path: &Path,
    remove: impl Fn(&Path) -> std::io::Result<()>,
) -> Result<()> {
    let mut attempts = 0;
    loop {
        match remove(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempts < ATTEMPTS => {
                attempts += 1;
                tracing::debug!(path = %path.display(), error = %e, "Retrying: {what}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(LabError::io(what, path)(e)),
        }
    }
}
