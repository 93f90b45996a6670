//! The part of DigitalOcean's OpenAPI description that the emulator validates against, cut
//! from a full description so the repository carries what its tests need
//! (`tests/do-emulator/openapi/`, made by `openapi/regenerate.sh`).
//!
//! The subset keeps, unchanged:
//! * `openapi`, `info` (its description holds the API's general rules: rate limits,
//!   pagination, errors), `servers`, `security`;
//! * every path item of [`PATHS`] whole, with all its operations (so a method the emulator
//!   does not serve on such a path is still answered 405 with the same `Allow` list as with
//!   the full description);
//! * every component those path items reference, and every component those reference, to
//!   the end (the closure of `$ref`s), and all security schemes (operations name them
//!   without a `$ref`);
//! * the top-level `tags` entries the kept operations name.
//!
//! Everything else (other paths, unreferenced components, `x-tagGroups`) is left out. The
//! output is pretty-printed JSON with object keys in byte order, so the same full
//! description always gives the same bytes, and a subset given as input gives itself back
//! ([`subset`] is idempotent; the tests check the vendored file is such a fixed point).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// The path templates codext (the `codext-do` client: the server's channel and the agent)
/// and the emulator use.
pub const PATHS: &[&str] = &[
    "/v2/account/keys",
    "/v2/account/keys/{ssh_key_identifier}",
    "/v2/actions/{action_id}",
    "/v2/droplets/{droplet_id}",
    "/v2/droplets/{droplet_id}/actions",
    "/v2/droplets/{droplet_id}/actions/{action_id}",
    "/v2/tags",
    "/v2/tags/{tag_id}",
    "/v2/tags/{tag_id}/resources",
];

/// Cut the subset out of `full`. Fails when a listed path is missing or a `$ref` does not
/// point at a component of the description.
pub fn subset(full: &Value) -> Result<Value, String> {
    let doc = full
        .as_object()
        .ok_or("the description is not a JSON object")?;
    let mut out = Map::new();
    for key in ["openapi", "info", "servers", "security"] {
        if let Some(v) = doc.get(key) {
            out.insert(key.to_string(), v.clone());
        }
    }
    let all_paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or("the description has no paths")?;
    let mut paths = Map::new();
    for p in PATHS {
        let item = all_paths
            .get(*p)
            .ok_or_else(|| format!("path {p} is not in the description"))?;
        paths.insert((*p).to_string(), item.clone());
    }

    // The closure of references: (kind, name) of every component reached.
    let components = doc.get("components").and_then(Value::as_object);
    let mut reached: BTreeSet<(String, String)> = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    collect_refs(&Value::Object(paths.clone()), &mut todo);
    while let Some(r) = todo.pop() {
        let (kind, name) = component_of(&r)?;
        if !reached.insert((kind.clone(), name.clone())) {
            continue;
        }
        let target = components
            .and_then(|c| c.get(&kind))
            .and_then(|k| k.get(&name))
            .ok_or_else(|| format!("{r} points at nothing in the description"))?;
        collect_refs(target, &mut todo);
    }
    let mut kept = Map::new();
    if let Some(c) = components {
        if let Some(schemes) = c.get("securitySchemes") {
            kept.insert("securitySchemes".to_string(), schemes.clone());
        }
    }
    for (kind, name) in &reached {
        let Some(v) = components
            .and_then(|c| c.get(kind))
            .and_then(|k| k.get(name))
        else {
            continue;
        };
        let entry = kept
            .entry(kind.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(name.clone(), v.clone());
        }
    }

    // The tags the kept operations name.
    let mut named: BTreeSet<String> = BTreeSet::new();
    for item in paths.values() {
        for op in item.as_object().into_iter().flat_map(|m| m.values()) {
            for t in op
                .get("tags")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(t) = t.as_str() {
                    named.insert(t.to_string());
                }
            }
        }
    }
    if let Some(tags) = doc.get("tags").and_then(Value::as_array) {
        let tags: Vec<Value> = tags
            .iter()
            .filter(|t| {
                t.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| named.contains(n))
            })
            .cloned()
            .collect();
        out.insert("tags".to_string(), Value::Array(tags));
    }
    out.insert("paths".to_string(), Value::Object(paths));
    out.insert("components".to_string(), Value::Object(kept));
    Ok(Value::Object(out))
}

/// The subset as the bytes of the vendored file: pretty-printed, keys in byte order (the
/// order of `serde_json`'s default map), one final newline.
pub fn to_bytes(subset: &Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(subset).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// `#/components/<kind>/<name>[/...]` → (kind, name), JSON-pointer escapes undone.
fn component_of(r: &str) -> Result<(String, String), String> {
    let unescape = |s: &str| s.replace("~1", "/").replace("~0", "~");
    let mut parts = r
        .strip_prefix("#/components/")
        .ok_or_else(|| format!("{r}: only references to #/components/... are supported"))?
        .split('/');
    match (parts.next(), parts.next()) {
        (Some(kind), Some(name)) if !kind.is_empty() && !name.is_empty() => {
            Ok((unescape(kind), unescape(name)))
        }
        _ => Err(format!("{r}: not a component reference")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_a_small_description_then_the_subset_keeps_the_listed_paths_and_the_closure_of_their_refs(
    ) {
        let mut paths = Map::new();
        for p in PATHS {
            paths.insert(
                (*p).to_string(),
                json!({"get": {"tags": ["Kept"], "responses": {"200": {"$ref": "#/components/responses/ok"}}}}),
            );
        }
        paths.insert(
            "/v2/elsewhere".into(),
            json!({"get": {"tags": ["Dropped"], "responses": {"200": {"$ref": "#/components/responses/other"}}}}),
        );
        let full = json!({
            "openapi": "3.0.0",
            "info": {"title": "t", "version": "2.0"},
            "tags": [{"name": "Kept"}, {"name": "Dropped"}],
            "x-tagGroups": [],
            "paths": paths,
            "components": {
                "securitySchemes": {"bearer_auth": {"type": "http"}},
                "responses": {
                    "ok": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/a"}}}},
                    "other": {"description": "x"}
                },
                "schemas": {
                    "a": {"properties": {"b": {"$ref": "#/components/schemas/b~1c"}}},
                    "b/c": {"items": {"$ref": "#/components/schemas/a"}},
                    "unused": {}
                }
            }
        });
        let s = subset(&full).expect("subset");
        assert_eq!(s["tags"], json!([{"name": "Kept"}]));
        assert!(s.get("x-tagGroups").is_none());
        assert!(s["paths"].get("/v2/elsewhere").is_none());
        assert_eq!(s["paths"].as_object().map(Map::len), Some(PATHS.len()));
        let names = |kind: &str| -> Vec<String> {
            s["components"][kind]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(names("schemas"), ["a", "b/c"]);
        assert_eq!(names("responses"), ["ok"]);
        assert_eq!(names("securitySchemes"), ["bearer_auth"]);
        assert_eq!(subset(&s).expect("again"), s, "idempotent");
    }

    #[test]
    fn given_a_dangling_ref_or_a_missing_path_then_refused() {
        let mut paths = Map::new();
        for p in PATHS {
            paths.insert(
                (*p).to_string(),
                json!({"get": {"$ref": "#/components/schemas/gone"}}),
            );
        }
        let full = json!({"paths": paths, "components": {}});
        assert!(subset(&full).unwrap_err().contains("points at nothing"));
        let full = json!({"paths": {}, "components": {}});
        assert!(subset(&full)
            .unwrap_err()
            .contains("is not in the description"));
        let mut paths = Map::new();
        for p in PATHS {
            paths.insert((*p).to_string(), json!({"get": {"$ref": "other.json#/x"}}));
        }
        assert!(subset(&json!({"paths": paths}))
            .unwrap_err()
            .contains("only references to #/components"));
    }
}
