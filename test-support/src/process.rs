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

/// What `<binary> print-openapi` writes: the service's OpenAPI document, printed without
/// a database, Redis or broker (the web app's client check and the API reference read it).
pub fn printed_openapi(binary: &str) -> serde_json::Value {
    let output = std::process::Command::new(binary)
        .arg("print-openapi")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{binary} print-openapi: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
