//! `codext-channel --check`: what the API token lets the channel do.
//!
//! No DigitalOcean endpoint reports a token's scopes, so the check makes
//! the channel's own **read** calls and reports each one's answer; the
//! write scopes the channel needs are listed, not probed (probing them
//! would change the account). `codext-helper doctor` runs it as the
//! channel user with the token on standard input (the root helper links
//! no HTTP code) and turns each line into a check of its own.
//!
//! Output: one JSON object per line,
//! `{"scope": "droplet:read", "call": "GET /v2/droplets/42", "result": "ok"|"refused"|"failed"|"not probed", "detail": "…"}`.

use codext_do::{metadata_droplet_id, ApiConfig, Client};
use serde_json::json;
use std::time::Duration;
use zeroize::Zeroizing;

/// Where the check looks.
#[derive(Debug, Clone)]
pub struct Target {
    /// API base URL.
    pub api_url: String,
    /// Metadata service base URL (for the droplet id when it is 0).
    pub metadata_url: String,
    /// The droplet; 0 asks the metadata service.
    pub droplet_id: u64,
}

/// The answer to one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded.
    Ok(String),
    /// The API refused the token (401, 403): the scope is missing.
    Refused(String),
    /// Anything else (network, 404, 5xx): the scope is unknown.
    Failed(String),
    /// A write scope: needed, not tried.
    NotProbed(String),
}

/// One line of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The DigitalOcean scope the call needs.
    pub scope: &'static str,
    /// Method and path.
    pub call: String,
    /// What happened.
    pub outcome: Outcome,
}

impl Probe {
    /// The JSON line printed for it.
    pub fn to_json(&self) -> serde_json::Value {
        let (result, detail) = match &self.outcome {
            Outcome::Ok(d) => ("ok", d),
            Outcome::Refused(d) => ("refused", d),
            Outcome::Failed(d) => ("failed", d),
            Outcome::NotProbed(d) => ("not probed", d),
        };
        json!({"scope": self.scope, "call": self.call, "result": result, "detail": detail})
    }
}

fn outcome<T>(r: codext_do::Result<T>, ok: impl FnOnce(T) -> String) -> Outcome {
    match r {
        Ok(v) => Outcome::Ok(ok(v)),
        Err(
            e @ codext_do::Error::Api {
                status: 401 | 403, ..
            },
        ) => Outcome::Refused(e.to_string()),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Runs the probes with `token` against `target`.
pub fn run(target: &Target, token: &Zeroizing<String>) -> Vec<Probe> {
    let client = Client::new(ApiConfig::new(
        target.api_url.clone(),
        token.as_str().to_owned(),
    ));
    let droplet = if target.droplet_id != 0 {
        Ok(target.droplet_id)
    } else {
        metadata_droplet_id(&target.metadata_url, Duration::from_secs(5))
    };
    let mut probes = Vec::new();
    match droplet {
        Ok(id) => probes.push(Probe {
            scope: "droplet:read",
            call: format!("GET /v2/droplets/{id}"),
            outcome: outcome(client.droplet(id), |d| {
                format!("droplet {id} is {:?}, {} tags", d.name, d.tags.len())
            }),
        }),
        Err(e) => probes.push(Probe {
            scope: "droplet:read",
            call: "GET /v2/droplets/{id}".into(),
            outcome: Outcome::Failed(format!(
                "no droplet id (set digitalocean.droplet_id, or run on the droplet): {e}"
            )),
        }),
    }
    probes.push(Probe {
        scope: "ssh_key:read",
        call: "GET /v2/account/keys".into(),
        outcome: outcome(client.list_keys(), |k| {
            format!("{} keys in the account", k.len())
        }),
    });
    probes.push(Probe {
        scope: "tag:read",
        call: "GET /v2/tags".into(),
        outcome: outcome(client.list_tags(), |t| {
            format!(
                "{} tags in the account (read to find puzzle tags a crash left behind)",
                t.len()
            )
        }),
    });
    for (scope, call, why) in [
        (
            "tag:create",
            "POST /v2/tags, POST /v2/tags/{tag}/resources",
            "to publish puzzles and ready marks",
        ),
        (
            "tag:delete",
            "DELETE /v2/tags/{tag}, DELETE /v2/tags/{tag}/resources",
            "to remove answered requests and spent puzzles",
        ),
    ] {
        probes.push(Probe {
            scope,
            call: call.into(),
            outcome: Outcome::NotProbed(format!(
                "needed {why}; not tried (it would write to the account)"
            )),
        });
    }
    probes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_each_outcome_then_its_line_names_scope_call_and_result() {
        let p = Probe {
            scope: "droplet:read",
            call: "GET /v2/droplets/7".into(),
            outcome: Outcome::Refused("403".into()),
        };
        assert_eq!(
            p.to_json(),
            json!({"scope": "droplet:read", "call": "GET /v2/droplets/7", "result": "refused", "detail": "403"})
        );
        let api = |status| codext_do::Error::Api {
            status,
            id: "forbidden".into(),
            message: "no".into(),
            request_id: String::new(),
        };
        assert!(matches!(
            outcome::<()>(Err(api(403)), |_| String::new()),
            Outcome::Refused(_)
        ));
        assert!(matches!(
            outcome::<()>(Err(api(401)), |_| String::new()),
            Outcome::Refused(_)
        ));
        assert!(matches!(
            outcome::<()>(Err(api(404)), |_| String::new()),
            Outcome::Failed(_)
        ));
        assert_eq!(outcome(Ok(3), |n| n.to_string()), Outcome::Ok("3".into()));
    }
}
