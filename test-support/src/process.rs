//! Services run as processes of their own (to be stopped, killed and restarted).

use std::process::Child;

/// A child process killed (SIGKILL) and reaped on drop, so a failing test leaves no
/// process behind.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
