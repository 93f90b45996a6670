//! The DigitalOcean OpenAPI 3.0 description, indexed for validation.
//!
//! The description (by default the subset vendored in `tests/do-emulator/openapi/`, see
//! [`crate::subset`]; `$DO_OPENAPI_SPEC` or `--spec` may name a full one) is loaded once per
//! process and path, converted from
//! OpenAPI 3.0 schema dialect to JSON Schema draft 4 (the draft OpenAPI 3.0 builds on), and
//! registered with the `jsonschema` crate so that the internal `#/components/...` references
//! that remain in the bundle resolve. Two converted copies are kept: one for requests (where
//! `readOnly` properties are not required) and one for responses (where `writeOnly` ones are
//! not). Validators are compiled lazily, one per schema location, and cached.
//!
//! Conversion of a Schema Object, following OpenAPI 3.0.3:
//! * `nullable: true` adds `"null"` to `type` when `type` is given (and does nothing
//!   otherwise, as 3.0.3 clarifies);
//! * siblings of `$ref` are ignored (dropped);
//! * OpenAPI-only keywords (`nullable`, `discriminator`, `readOnly`, `writeOnly`, `xml`,
//!   `externalDocs`, `example`, `deprecated`, `x-*`) are removed;
//! * everything else (including draft-4 style boolean `exclusiveMinimum`) is kept as is.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::{Draft, Registry, Validator};
use serde_json::{Map, Value};

const REQUEST_DOC: &str = "https://do-openapi.invalid/request.json";
const RESPONSE_DOC: &str = "https://do-openapi.invalid/response.json";

/// Which converted copy of the description a schema is validated against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server: `readOnly` properties are not required.
    Request,
    /// Server to client: `writeOnly` properties are not required.
    Response,
}

/// One segment of a path template.
#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A parameter of an operation (path or query).
#[derive(Debug, Clone)]
pub struct Param {
    /// Parameter name.
    pub name: String,
    /// Whether it must be present.
    pub required: bool,
    /// JSON pointer (into the converted document) of its schema, if it has one.
    pub schema: Option<String>,
}

/// One declared response of an operation.
#[derive(Debug, Clone, Default)]
pub struct ResponseSpec {
    /// Header name (lower case) → JSON pointer of its schema.
    pub headers: BTreeMap<String, Option<String>>,
    /// Media type → JSON pointer of its schema (None: any body).
    pub content: BTreeMap<String, Option<String>>,
}

/// One operation (method + path template) of the description.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path template, e.g. `/v2/droplets/{droplet_id}`.
    pub template: String,
    /// `operationId`, if declared.
    pub operation_id: Option<String>,
    segments: Vec<Segment>,
    /// Path parameters.
    pub path_params: Vec<Param>,
    /// Query parameters.
    pub query_params: Vec<Param>,
    /// Request body: whether required, and media type → schema pointer.
    pub request_body: Option<(bool, BTreeMap<String, Option<String>>)>,
    /// Status code (or `default`, or `2XX`) → response.
    pub responses: BTreeMap<String, ResponseSpec>,
    /// The token scopes the operation needs (its `security` entry, e.g.
    /// `droplet:read`); a custom-scoped token lacking one gets 403.
    pub scopes: Vec<String>,
}

/// Outcome of matching a request line against the description.
#[derive(Debug)]
pub enum Match<'a> {
    /// An operation, with the decoded path parameters.
    Found(&'a Operation, HashMap<String, String>),
    /// The path exists but not with this method; the allowed methods.
    MethodNotAllowed(Vec<String>),
    /// No path template matches.
    NotFound,
}

/// The indexed description.
pub struct Spec {
    path: PathBuf,
    raw: Value,
    registry: Registry<'static>,
    operations: Vec<Operation>,
    validators: Mutex<HashMap<(Direction, String), CompiledSchema>>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("path", &self.path)
            .field("operations", &self.operations.len())
            .finish_non_exhaustive()
    }
}

/// The part of DigitalOcean's description the emulator validates against, carried in the
/// repository (`tests/do-emulator/openapi/`: its source, license and SHA-256) and built into
/// the binary, so the emulator needs no file beside it.
pub const VENDORED: &str = include_str!("../openapi/digitalocean-v2.json");

/// The description to use instead of [`VENDORED`]: `$DO_OPENAPI_SPEC`, when set (e.g. a full
/// description).
pub fn spec_override() -> Option<PathBuf> {
    std::env::var_os("DO_OPENAPI_SPEC")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// A compiled schema, or why it could not be compiled.
type CompiledSchema = Arc<Result<Validator, String>>;

type SpecCache = Mutex<HashMap<PathBuf, Arc<Spec>>>;

impl Spec {
    /// The description at `path`, loaded and indexed once per process.
    pub fn load(path: &Path) -> std::io::Result<Arc<Spec>> {
        static CACHE: OnceLock<SpecCache> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(spec) = guard.get(&key) {
            return Ok(spec.clone());
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
        })?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let spec = Arc::new(Spec::from_value(key.clone(), raw)?);
        guard.insert(key, spec.clone());
        Ok(spec)
    }

    /// The description at [`spec_override`], else the [`VENDORED`] one (parsed and indexed
    /// once per process).
    pub fn load_default() -> std::io::Result<Arc<Spec>> {
        if let Some(path) = spec_override() {
            return Spec::load(&path);
        }
        static VENDORED_SPEC: OnceLock<Result<Arc<Spec>, String>> = OnceLock::new();
        VENDORED_SPEC
            .get_or_init(|| {
                let raw: Value = serde_json::from_str(VENDORED).map_err(|e| e.to_string())?;
                Spec::from_value(PathBuf::from("<vendored digitalocean-v2.json>"), raw)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    fn from_value(path: PathBuf, raw: Value) -> std::io::Result<Spec> {
        let request_doc = convert_document(&raw, Direction::Request);
        let response_doc = convert_document(&raw, Direction::Response);
        let registry = Registry::new()
            .draft(Draft::Draft4)
            .add(REQUEST_DOC, request_doc)
            .and_then(|b| b.add(RESPONSE_DOC, response_doc))
            .and_then(|b| b.prepare())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let operations = index_operations(&raw);
        Ok(Spec {
            path,
            raw,
            registry,
            operations,
            validators: Mutex::new(HashMap::new()),
        })
    }

    /// The unconverted description.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// All operations.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// Match a method and a (raw, percent-encoded) path without query string.
    pub fn find(&self, method: &str, path: &str) -> Match<'_> {
        let segs: Vec<String> = split_path(path);
        let mut candidates: Vec<(&Operation, usize, HashMap<String, String>)> = Vec::new();
        for op in &self.operations {
            if op.segments.len() != segs.len() {
                continue;
            }
            let mut literal = 0;
            let mut params = HashMap::new();
            let mut ok = true;
            for (s, actual) in op.segments.iter().zip(&segs) {
                match s {
                    Segment::Literal(l) if l == actual => literal += 1,
                    Segment::Literal(_) => {
                        ok = false;
                        break;
                    }
                    Segment::Param(name) => {
                        if actual.is_empty() {
                            ok = false;
                            break;
                        }
                        params.insert(name.clone(), actual.clone());
                    }
                }
            }
            if ok {
                candidates.push((op, literal, params));
            }
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(c.1));
        if let Some(pos) = candidates
            .iter()
            .position(|(op, _, _)| op.method.eq_ignore_ascii_case(method))
        {
            let (op, _, params) = candidates.swap_remove(pos);
            return Match::Found(op, params);
        }
        if candidates.is_empty() {
            Match::NotFound
        } else {
            let mut allowed: Vec<String> = candidates
                .iter()
                .filter(|c| c.1 == candidates[0].1)
                .map(|c| c.0.method.clone())
                .collect();
            allowed.sort();
            allowed.dedup();
            Match::MethodNotAllowed(allowed)
        }
    }

    /// Validate `instance` against the schema at `pointer` (a JSON pointer into the
    /// description). Returns one message per error; a schema that cannot be compiled is
    /// reported as an error too.
    pub fn validate_at(
        &self,
        direction: Direction,
        pointer: &str,
        instance: &Value,
    ) -> Vec<String> {
        let validator = self.validator(direction, pointer);
        match &*validator {
            Ok(v) => v
                .iter_errors(instance)
                .map(|e| {
                    let at = e.instance_path().to_string();
                    let at = if at.is_empty() { "/".to_string() } else { at };
                    format!("at {at}: {e}")
                })
                .collect(),
            Err(e) => vec![format!("schema {pointer} could not be compiled: {e}")],
        }
    }

    fn validator(&self, direction: Direction, pointer: &str) -> CompiledSchema {
        let key = (direction, pointer.to_string());
        if let Some(v) = self
            .validators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return v.clone();
        }
        let doc = match direction {
            Direction::Request => REQUEST_DOC,
            Direction::Response => RESPONSE_DOC,
        };
        let root = serde_json::json!({ "$ref": format!("{doc}#{}", pointer_to_fragment(pointer)) });
        let built = jsonschema::options()
            .with_draft(Draft::Draft4)
            .with_registry(&self.registry)
            .with_format("uuid", is_uuid)
            .should_validate_formats(true)
            .should_ignore_unknown_formats(true)
            .offline()
            .build(&root)
            .map_err(|e| e.to_string());
        let built = Arc::new(built);
        self.validators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, built.clone());
        built
    }

    /// Validate a request; returns violation messages (without the method/path prefix).
    pub fn validate_request(
        &self,
        op: &Operation,
        path_params: &HashMap<String, String>,
        query: &[(String, String)],
        content_type: Option<&str>,
        body: &[u8],
    ) -> Vec<String> {
        let mut out = Vec::new();
        for p in &op.path_params {
            match path_params.get(&p.name) {
                Some(v) => {
                    if let Some(ptr) = &p.schema {
                        let errs = self.validate_scalar(ptr, v);
                        out.extend(
                            errs.into_iter()
                                .map(|e| format!("path parameter {}={v:?}: {e}", p.name)),
                        );
                    }
                }
                None => out.push(format!("path parameter {} missing", p.name)),
            }
        }
        for (name, value) in query {
            match op.query_params.iter().find(|p| &p.name == name) {
                Some(p) => {
                    if let Some(ptr) = &p.schema {
                        let errs = self.validate_scalar(ptr, value);
                        out.extend(
                            errs.into_iter()
                                .map(|e| format!("query parameter {name}={value:?}: {e}")),
                        );
                    }
                }
                None => out.push(format!("query parameter {name:?} is not declared")),
            }
        }
        for p in &op.query_params {
            if p.required && !query.iter().any(|(n, _)| n == &p.name) {
                out.push(format!("required query parameter {} missing", p.name));
            }
        }
        match &op.request_body {
            None => {
                if !body.iter().all(u8::is_ascii_whitespace) {
                    out.push("has a body but the operation declares none".to_string());
                }
            }
            Some((required, content)) => {
                if body.iter().all(u8::is_ascii_whitespace) {
                    if *required {
                        out.push("required body missing".to_string());
                    }
                } else {
                    let media = content_type.map(|c| {
                        c.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase()
                    });
                    let media = media.unwrap_or_default();
                    match content.get(&media) {
                        None => out.push(format!(
                            "content-type {media:?} not declared (declared: {})",
                            content.keys().cloned().collect::<Vec<_>>().join(", ")
                        )),
                        Some(schema) => {
                            if media.contains("json") {
                                match serde_json::from_slice::<Value>(body) {
                                    Err(e) => out.push(format!("body is not JSON: {e}")),
                                    Ok(v) => {
                                        if let Some(ptr) = schema {
                                            out.extend(
                                                self.validate_at(Direction::Request, ptr, &v)
                                                    .into_iter()
                                                    .map(|e| format!("body {e}")),
                                            );
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// A path or query value is a string on the wire: it is valid if it validates as a
    /// string, or, when it reads as a JSON number or boolean, as that.
    fn validate_scalar(&self, pointer: &str, raw: &str) -> Vec<String> {
        let as_string = self.validate_at(Direction::Request, pointer, &Value::String(raw.into()));
        if as_string.is_empty() {
            return as_string;
        }
        if let Ok(v) = serde_json::from_str::<Value>(raw) {
            if v.is_number() || v.is_boolean() {
                return self.validate_at(Direction::Request, pointer, &v);
            }
        }
        as_string
    }

    /// Validate a response: status declared (or `default`), declared headers' values, and the
    /// body against the response's schema. Returns violation messages.
    pub fn validate_response(
        &self,
        op: &Operation,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Vec<String> {
        let mut out = Vec::new();
        let code = status.to_string();
        let range = format!("{}XX", status / 100);
        let resp = op
            .responses
            .get(&code)
            .or_else(|| op.responses.get(&range))
            .or_else(|| op.responses.get("default"));
        let Some(resp) = resp else {
            out.push(format!(
                "response status {status} is not declared (declared: {})",
                op.responses.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
            return out;
        };
        for (name, schema) in &resp.headers {
            let Some(ptr) = schema else { continue };
            if let Some((_, value)) = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                let errs = self.validate_scalar_response(ptr, value);
                out.extend(
                    errs.into_iter()
                        .map(|e| format!("header {name}={value:?}: {e}")),
                );
            }
        }
        let content_type = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if resp.content.is_empty() {
            if !body.is_empty() {
                out.push("has a body but the response declares no content".to_string());
            }
            return out;
        }
        let media = content_type.unwrap_or_default();
        match resp.content.get(&media) {
            None => out.push(format!(
                "content-type {media:?} not declared (declared: {})",
                resp.content.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
            Some(schema) => {
                if media.contains("json") {
                    match serde_json::from_slice::<Value>(body) {
                        Err(e) => out.push(format!("body is not JSON: {e}")),
                        Ok(v) => {
                            if let Some(ptr) = schema {
                                out.extend(
                                    self.validate_at(Direction::Response, ptr, &v)
                                        .into_iter()
                                        .map(|e| format!("body {e}")),
                                );
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn validate_scalar_response(&self, pointer: &str, raw: &str) -> Vec<String> {
        let as_string = self.validate_at(Direction::Response, pointer, &Value::String(raw.into()));
        if as_string.is_empty() {
            return as_string;
        }
        match serde_json::from_str::<Value>(raw) {
            Ok(v) if v.is_number() || v.is_boolean() => {
                self.validate_at(Direction::Response, pointer, &v)
            }
            _ => as_string,
        }
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Split a raw path into percent-decoded segments (without the leading empty one).
pub fn split_path(path: &str) -> Vec<String> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed.split('/').map(percent_decode).collect()
}

/// Percent-decode (lossy on invalid UTF-8); `+` is kept as is.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escape one JSON-pointer token.
pub fn escape_token(t: &str) -> String {
    t.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer as a URI fragment: percent-encode what a fragment may not hold.
fn pointer_to_fragment(pointer: &str) -> String {
    let mut out = String::new();
    for c in pointer.chars() {
        if c.is_ascii_alphanumeric() || "-._~/!$&'()*+,;=:@".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

fn get_pointer<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    doc.pointer(pointer)
}

/// Follow `$ref` chains of non-schema objects (responses, parameters, ...), returning the
/// object and its pointer.
fn deref<'a>(doc: &'a Value, value: &'a Value, pointer: String) -> (&'a Value, String) {
    let mut current = value;
    let mut ptr = pointer;
    for _ in 0..16 {
        match current.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with('#') => {
                let p = percent_decode(&r[1..]);
                match get_pointer(doc, &p) {
                    Some(v) => {
                        current = v;
                        ptr = p;
                    }
                    None => break,
                }
            }
            _ => break,
        }
    }
    (current, ptr)
}

fn index_operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return ops;
    };
    for (template, item) in paths {
        let item_ptr = format!("/paths/{}", escape_token(template));
        let (item, item_ptr) = deref(doc, item, item_ptr);
        let segments: Vec<Segment> = split_path(template)
            .into_iter()
            .map(|s| {
                if s.starts_with('{') && s.ends_with('}') {
                    Segment::Param(s[1..s.len() - 1].to_string())
                } else {
                    Segment::Literal(s)
                }
            })
            .collect();
        let common_params = item.get("parameters");
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            let Some(op) = item.get(method) else { continue };
            let op_ptr = format!("{item_ptr}/{method}");
            let mut path_params: Vec<Param> = Vec::new();
            let mut query_params: Vec<Param> = Vec::new();
            let mut add_params = |list: &Value, list_ptr: String| {
                if let Some(arr) = list.as_array() {
                    for (i, p) in arr.iter().enumerate() {
                        let (p, p_ptr) = deref(doc, p, format!("{list_ptr}/{i}"));
                        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                        let location = p.get("in").and_then(Value::as_str).unwrap_or("");
                        let param = Param {
                            name: name.to_string(),
                            required: p.get("required").and_then(Value::as_bool).unwrap_or(false)
                                || location == "path",
                            schema: p.get("schema").map(|_| format!("{p_ptr}/schema")),
                        };
                        let target = match location {
                            "path" => &mut path_params,
                            "query" => &mut query_params,
                            _ => continue,
                        };
                        target.retain(|q| q.name != param.name);
                        target.push(param);
                    }
                }
            };
            if let Some(c) = common_params {
                add_params(c, format!("{item_ptr}/parameters"));
            }
            if let Some(c) = op.get("parameters") {
                add_params(c, format!("{op_ptr}/parameters"));
            }
            let request_body = op.get("requestBody").map(|rb| {
                let (rb, rb_ptr) = deref(doc, rb, format!("{op_ptr}/requestBody"));
                let required = rb.get("required").and_then(Value::as_bool).unwrap_or(false);
                (required, content_map(rb, &rb_ptr))
            });
            let mut responses = BTreeMap::new();
            if let Some(rs) = op.get("responses").and_then(Value::as_object) {
                for (code, r) in rs {
                    let (r, r_ptr) =
                        deref(doc, r, format!("{op_ptr}/responses/{}", escape_token(code)));
                    let mut headers = BTreeMap::new();
                    if let Some(hs) = r.get("headers").and_then(Value::as_object) {
                        for (name, h) in hs {
                            let (h, h_ptr) =
                                deref(doc, h, format!("{r_ptr}/headers/{}", escape_token(name)));
                            headers.insert(
                                name.to_ascii_lowercase(),
                                h.get("schema").map(|_| format!("{h_ptr}/schema")),
                            );
                        }
                    }
                    responses.insert(
                        code.to_ascii_uppercase().replace("DEFAULT", "default"),
                        ResponseSpec {
                            headers,
                            content: content_map(r, &r_ptr),
                        },
                    );
                }
            }
            ops.push(Operation {
                method: method.to_ascii_uppercase(),
                template: template.clone(),
                operation_id: op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                segments: segments.clone(),
                path_params,
                query_params,
                request_body,
                responses,
                scopes: op
                    .get("security")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|req| req.get("bearer_auth").and_then(Value::as_array))
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            });
        }
    }
    ops
}

fn content_map(obj: &Value, ptr: &str) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    if let Some(c) = obj.get("content").and_then(Value::as_object) {
        for (media, m) in c {
            out.insert(
                media.to_ascii_lowercase(),
                m.get("schema")
                    .map(|_| format!("{ptr}/content/{}/schema", escape_token(media))),
            );
        }
    }
    out
}

/// Convert the whole description for one direction: every Schema Object (under
/// `components/schemas` and every `schema` key outside schemas) is converted; examples are
/// dropped to keep the document small.
fn convert_document(raw: &Value, direction: Direction) -> Value {
    let ctx = Ctx {
        doc: raw,
        direction,
    };
    walk_non_schema(&ctx, raw, None)
}

struct Ctx<'a> {
    doc: &'a Value,
    direction: Direction,
}

fn walk_non_schema(ctx: &Ctx<'_>, v: &Value, parent_key: Option<&str>) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                if k == "example" || k == "examples" {
                    continue;
                }
                let converted = if k == "schema" && val.is_object() {
                    convert_schema(ctx, val)
                } else if k == "schemas" && parent_key == Some("components") {
                    match val {
                        Value::Object(schemas) => Value::Object(
                            schemas
                                .iter()
                                .map(|(n, s)| (n.clone(), convert_schema(ctx, s)))
                                .collect(),
                        ),
                        other => other.clone(),
                    }
                } else {
                    walk_non_schema(ctx, val, Some(k))
                };
                out.insert(k.clone(), converted);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| walk_non_schema(ctx, x, None)).collect()),
        other => other.clone(),
    }
}

const DROPPED: &[&str] = &[
    "nullable",
    "discriminator",
    "readOnly",
    "writeOnly",
    "xml",
    "externalDocs",
    "example",
    "examples",
    "deprecated",
];

/// Resolve a schema's `$ref` chain in the raw document (for `readOnly`/`writeOnly` lookups).
fn resolve_schema<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    deref(doc, s, String::new()).0
}

fn convert_schema(ctx: &Ctx<'_>, s: &Value) -> Value {
    let Value::Object(m) = s else {
        return s.clone();
    };
    if let Some(r) = m.get("$ref") {
        let mut out = Map::new();
        out.insert("$ref".into(), r.clone());
        return Value::Object(out);
    }
    let mut out = Map::new();
    for (k, v) in m {
        if DROPPED.contains(&k.as_str()) || k.starts_with("x-") {
            continue;
        }
        let converted = match k.as_str() {
            "properties" | "patternProperties" | "definitions" => match v {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(n, p)| (n.clone(), convert_schema(ctx, p)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" | "not" | "additionalItems" => match v {
                Value::Array(a) => Value::Array(a.iter().map(|x| convert_schema(ctx, x)).collect()),
                Value::Object(_) => convert_schema(ctx, v),
                other => other.clone(),
            },
            "allOf" | "anyOf" | "oneOf" => match v {
                Value::Array(a) => Value::Array(a.iter().map(|x| convert_schema(ctx, x)).collect()),
                other => other.clone(),
            },
            "required" => {
                let props = m.get("properties").and_then(Value::as_object);
                let list: Vec<Value> = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|name| {
                                let Some(name) = name.as_str() else {
                                    return true;
                                };
                                let Some(p) = props.and_then(|p| p.get(name)) else {
                                    return true;
                                };
                                let p = resolve_schema(ctx.doc, p);
                                let flag = match ctx.direction {
                                    Direction::Request => "readOnly",
                                    Direction::Response => "writeOnly",
                                };
                                !p.get(flag).and_then(Value::as_bool).unwrap_or(false)
                            })
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                if list.is_empty() {
                    continue;
                }
                Value::Array(list)
            }
            _ => v.clone(),
        };
        out.insert(k.clone(), converted);
    }
    if m.get("nullable").and_then(Value::as_bool) == Some(true) {
        match out.get("type").cloned() {
            Some(Value::String(t)) => {
                // 3.0.3: an `enum` without null still rejects null; kept as is.
                out.insert("type".into(), serde_json::json!([t, "null"]));
            }
            Some(Value::Array(mut ts)) => {
                if !ts.iter().any(|t| t == "null") {
                    ts.push("null".into());
                }
                out.insert("type".into(), Value::Array(ts));
            }
            _ => {}
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_nullable_typed_schema_then_null_is_added_to_type() {
        let doc = serde_json::json!({});
        let ctx = Ctx {
            doc: &doc,
            direction: Direction::Response,
        };
        let s = serde_json::json!({"type": "string", "nullable": true, "example": "x", "x-foo": 1});
        assert_eq!(
            convert_schema(&ctx, &s),
            serde_json::json!({"type": ["string", "null"]})
        );
    }

    /// Every schema of the operations the emulator serves compiles (so no validation is
    /// silently skipped), in both directions.
    #[test]
    fn given_emulated_operations_then_all_their_schemas_compile() {
        let spec = Spec::load_default().expect("spec");
        let emulated = [
            ("GET", "/v2/droplets/{droplet_id}"),
            ("GET", "/v2/droplets/{droplet_id}/actions"),
            ("POST", "/v2/droplets/{droplet_id}/actions"),
            ("GET", "/v2/droplets/{droplet_id}/actions/{action_id}"),
            ("GET", "/v2/actions/{action_id}"),
            ("GET", "/v2/tags"),
            ("POST", "/v2/tags"),
            ("GET", "/v2/tags/{tag_id}"),
            ("DELETE", "/v2/tags/{tag_id}"),
            ("POST", "/v2/tags/{tag_id}/resources"),
            ("DELETE", "/v2/tags/{tag_id}/resources"),
            ("GET", "/v2/account/keys"),
            ("POST", "/v2/account/keys"),
            ("GET", "/v2/account/keys/{ssh_key_identifier}"),
            ("PUT", "/v2/account/keys/{ssh_key_identifier}"),
            ("DELETE", "/v2/account/keys/{ssh_key_identifier}"),
        ];
        let mut failures = Vec::new();
        for (m, t) in emulated {
            let op = spec
                .operations()
                .iter()
                .find(|o| o.method == m && o.template == t)
                .unwrap_or_else(|| panic!("{m} {t} not in the description"));
            let mut pointers: Vec<(Direction, String)> = Vec::new();
            for p in op.path_params.iter().chain(&op.query_params) {
                pointers.extend(p.schema.clone().map(|s| (Direction::Request, s)));
            }
            if let Some((_, content)) = &op.request_body {
                pointers.extend(
                    content
                        .values()
                        .flatten()
                        .map(|s| (Direction::Request, s.clone())),
                );
            }
            for r in op.responses.values() {
                pointers.extend(
                    r.content
                        .values()
                        .flatten()
                        .map(|s| (Direction::Response, s.clone())),
                );
                pointers.extend(
                    r.headers
                        .values()
                        .flatten()
                        .map(|s| (Direction::Response, s.clone())),
                );
            }
            assert!(!pointers.is_empty());
            for (d, p) in pointers {
                if let Err(e) = &*spec.validator(d, &p) {
                    failures.push(format!("{m} {t} {p}: {e}"));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    /// Every schema of the whole description compiles (about a second).
    #[test]
    fn given_whole_description_then_every_schema_compiles() {
        let spec = Spec::load_default().expect("spec");
        let mut failures = Vec::new();
        let mut count = 0;
        for op in spec.operations() {
            let mut pointers: Vec<(Direction, String)> = Vec::new();
            for p in op.path_params.iter().chain(&op.query_params) {
                pointers.extend(p.schema.clone().map(|s| (Direction::Request, s)));
            }
            if let Some((_, content)) = &op.request_body {
                pointers.extend(
                    content
                        .values()
                        .flatten()
                        .map(|s| (Direction::Request, s.clone())),
                );
            }
            for r in op.responses.values() {
                pointers.extend(
                    r.content
                        .values()
                        .flatten()
                        .map(|s| (Direction::Response, s.clone())),
                );
            }
            for (d, p) in pointers {
                count += 1;
                if let Err(e) = &*spec.validator(d, &p) {
                    failures.push(format!("{} {} {p}: {e}", op.method, op.template));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {count}: {failures:#?}",
            failures.len()
        );
    }

    /// The vendored subset is what `openapi-subset` makes of itself (so every `$ref` in it
    /// resolves inside it: nothing was cut that a kept operation needs), and its bytes are
    /// those `SHA256SUMS` names.
    #[test]
    fn given_the_vendored_subset_then_it_is_closed_under_its_refs_and_matches_its_sha256() {
        use sha2::Digest;
        let raw: Value = serde_json::from_str(VENDORED).expect("the vendored subset is JSON");
        let again = crate::subset::subset(&raw).expect("subset of the subset");
        assert!(
            crate::subset::to_bytes(&again) == VENDORED.as_bytes(),
            "tests/do-emulator/openapi/digitalocean-v2.json is not a fixed point of \
             openapi-subset: regenerate it with tests/do-emulator/openapi/regenerate.sh"
        );
        let sums = include_str!("../openapi/SHA256SUMS");
        let listed = sums
            .lines()
            .find_map(|l| l.strip_suffix("  digitalocean-v2.json"))
            .expect("SHA256SUMS names digitalocean-v2.json");
        let actual: String = sha2::Sha256::digest(VENDORED.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            listed, actual,
            "SHA256SUMS does not match the vendored subset"
        );
    }

    #[test]
    fn given_pointer_with_braces_then_fragment_is_percent_encoded() {
        assert_eq!(
            pointer_to_fragment("/paths/~1v2~1tags~1{tag_id}/get"),
            "/paths/~1v2~1tags~1%7Btag_id%7D/get"
        );
    }
}
