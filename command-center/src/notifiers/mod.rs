//! The notifier kinds this server ships, each registering itself with the engine's registry
//! ([`vaultmesh_engines::notify::registry`]), as checks do with the agent's: `webhook` (also
//! Slack and Mattermost), `ntfy` and `email`. They are the notification engine's transports,
//! kept here so the engine links no HTTP or mail crate.

pub mod email;
pub mod ntfy;
pub mod webhook;

use vaultmesh_engines::notify::SendError;

/// The HTTP client notifiers share: no redirects (a webhook URL is a secret that must not be
/// forwarded), a 10 s timeout.
pub fn http_client() -> reqwest::Client {
    // The process's TLS provider (ring), if nothing installed it yet.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// A reqwest error as text without its URL.
pub fn http_error(e: reqwest::Error) -> SendError {
    SendError(e.without_url().to_string())
}

/// Checks an HTTP reply: anything but 2xx is a failure naming the status.
pub fn http_status(r: &reqwest::Response) -> Result<(), SendError> {
    if r.status().is_success() {
        Ok(())
    } else {
        Err(SendError(format!("the receiver answered {}", r.status())))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_three_built_in_kinds_are_registered() {
        assert_eq!(
            vaultmesh_engines::notify::registry::kinds(),
            ["email", "ntfy", "webhook"]
        );
    }
}
