//! The droplet metadata service: the id of the droplet this runs on.

use super::token_guard::scrub;
use super::transport::MAX_RETRIES;
use crate::error::{Error, Result};
use std::time::Duration;

/// `GET {metadata_url}/id`: the id of the droplet this runs on, from the
/// droplet metadata service (no token; only reachable from the droplet).
/// Transport failures, 429 and 5xx are retried like API requests.
pub fn metadata_droplet_id(metadata_url: &str, timeout: Duration) -> Result<u64> {
    let agent = ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .build();
    let url = format!("{}/id", metadata_url.trim_end_matches('/'));
    let mut failures = 0u32;
    loop {
        let problem = match agent.get(&url).call() {
            Ok(resp) if resp.status() == 200 => {
                let text = resp
                    .into_string()
                    .map_err(|e| Error::Http(format!("GET {url}: reading the answer: {e}")))?;
                return text.trim().parse::<u64>().map_err(|_| {
                    Error::ApiFormat(format!(
                        "GET {url}: not a droplet id: {:?}",
                        scrub(&text, "")
                    ))
                });
            }
            Ok(resp) | Err(ureq::Error::Status(_, resp))
                if !(resp.status() == 429 || resp.status() >= 500) =>
            {
                return Err(Error::Http(format!(
                    "GET {url}: HTTP {}: is this a DigitalOcean droplet with its metadata service?",
                    resp.status()
                )));
            }
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => format!("HTTP {}", resp.status()),
            Err(ureq::Error::Transport(t)) => t.to_string(),
        };
        if failures >= MAX_RETRIES {
            return Err(Error::Http(format!(
                "GET {url}: {problem} (still failing after {MAX_RETRIES} retries): is this a DigitalOcean droplet?"
            )));
        }
        std::thread::sleep(Duration::from_millis(500u64 << failures));
        failures += 1;
    }
}
