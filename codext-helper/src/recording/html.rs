//! `sessions export --html`: one self-contained page — the list of the
//! channels and their commands, and a player per channel — that needs no
//! network to view.
//!
//! The player is asciinema-player, vendored from the npm registry
//! (`codext-helper/assets/asciinema-player/`: the bundle, its Apache-2.0
//! license, and `VERSION` with the exact version, the registry's integrity
//! and each file's SHA-256; `scripts/update-asciinema-player.sh` updates
//! it). It is not a terminal emulator of codext's.
//!
//! The record is attacker-controlled, so:
//! * every text in the markup (commands, paths, ids, reasons) is
//!   HTML-escaped, after [`super::filter::escape`];
//! * the recordings go into a `<script type="application/json">` element
//!   (never run) as JSON in which `<`, `>`, `&`, U+2028 and U+2029 are
//!   `\u` escapes, so no byte sequence in a record can end that element;
//! * a Content-Security-Policy allows nothing but the page's own inline
//!   player script, its start-up script and its two style sheets (each by
//!   its SHA-256), and WebAssembly compilation (the player's terminal is
//!   WebAssembly, inlined in its script): no other script, no event
//!   handler attribute, no image, frame, font, form or connection.

use super::filter::escape;
use super::format::{self, Parsed};
use sha2::{Digest, Sha256};

/// The vendored player.
pub const PLAYER_JS: &str = include_str!("../../assets/asciinema-player/asciinema-player.min.js");
/// Its style sheet.
pub const PLAYER_CSS: &str = include_str!("../../assets/asciinema-player/asciinema-player.css");
/// What was vendored, and each file's SHA-256.
pub const PLAYER_VERSION: &str = include_str!("../../assets/asciinema-player/VERSION");

const PAGE_CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#222;background:#fafafa}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}\
code{font-family:monospace;white-space:pre-wrap;word-break:break-all}.player{max-width:60em;margin:.5em 0 2em}\
.note{color:#a33}";

/// Starts one player per `[data-cast]` element, from the JSON element.
const START: &str = "(function(){var d=JSON.parse(document.getElementById('codext-records').textContent);\
document.querySelectorAll('[data-cast]').forEach(function(el){var i=Number(el.getAttribute('data-cast'));\
AsciinemaPlayer.create({data:d[i]},el,{fit:'width',idleTimeLimit:2,preload:true,poster:'npt:'+el.getAttribute('data-end')});});})();";

fn csp_hash(text: &str) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(text.as_bytes());
    // Standard base64 (RFC 4648 §4), as CSP hash sources are written.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("'sha256-");
    for chunk in digest.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    let _ = write!(out, "'");
    out
}

/// HTML-escapes text for element content or a quoted attribute.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that can sit inside a `<script>` element: nothing in it can end
/// the element or start a comment-like parse state.
pub fn script_json(v: &serde_json::Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The Content-Security-Policy of the page.
pub fn policy() -> String {
    format!(
        "default-src 'none'; script-src {} {} 'wasm-unsafe-eval'; style-src {} {}; \
         img-src 'none'; font-src 'none'; connect-src 'none'; media-src 'none'; object-src 'none'; \
         frame-src 'none'; worker-src 'none'; base-uri 'none'; form-action 'none'",
        csp_hash(PLAYER_JS),
        csp_hash(START),
        csp_hash(PLAYER_CSS),
        csp_hash(PAGE_CSS)
    )
}

fn td(s: &str) -> String {
    format!("<td><code>{}</code></td>", html(&escape(s)))
}

/// The page for `title` and the channels `records` (in order).
pub fn page(title: &str, records: &[Parsed]) -> Result<String, String> {
    // The vendored files are checked when they are updated; a bundle that
    // could end its element is still refused here.
    let lower = PLAYER_JS.to_ascii_lowercase();
    if lower.contains("</script")
        || lower.contains("<!--")
        || PLAYER_CSS.to_ascii_lowercase().contains("</style")
    {
        return Err("the vendored player could end the element it is inlined into".into());
    }
    let casts: Vec<serde_json::Value> = records
        .iter()
        .map(|p| serde_json::Value::from(format::to_asciicast(p)))
        .collect();
    let mut rows = String::new();
    let mut sections = String::new();
    for (i, p) in records.iter().enumerate() {
        let m = &p.meta;
        let command = m.command.clone().unwrap_or_else(|| "(login shell)".into());
        let (exit, duration, truncated) = match &p.end {
            Some(e) => (
                format::exit_text(e.exit.as_ref()),
                format!("{:.1} s", e.duration),
                e.reason.clone().filter(|_| e.truncated),
            ),
            None => (
                "?".into(),
                "?".into(),
                Some("no end: still recorded, or cut".into()),
            ),
        };
        // The poster: the screen as the channel left it.
        let end = p.events.last().map_or(0.0, |e| e.t.min(9e6)) + 0.001;
        rows.push_str(&format!(
            "<tr>{}{}{}{}{}{}</tr>\n",
            td(&m.id),
            td(&m.kind),
            td(&command),
            td(&codext_core::time::rfc3339(m.started)),
            td(&duration),
            td(&exit),
        ));
        sections.push_str(&format!(
            "<section><h2><code>{}</code> {} <code>{}</code></h2>\n",
            html(&escape(&m.id)),
            html(&escape(&m.kind)),
            html(&escape(&command))
        ));
        if let Some(t) = truncated {
            sections.push_str(&format!(
                "<p class=\"note\">truncated: {}</p>\n",
                html(&escape(&t))
            ));
        }
        let ops: Vec<String> = p
            .events
            .iter()
            .filter(|e| e.code == "x")
            .map(|e| format::op_text(e.op.as_ref()))
            .collect();
        if !ops.is_empty() {
            sections.push_str("<ul class=\"ops\">\n");
            for op in ops {
                sections.push_str(&format!("<li><code>{}</code></li>\n", html(&escape(&op))));
            }
            sections.push_str("</ul>\n");
        }
        sections.push_str(&format!(
            "<div class=\"player\" data-cast=\"{i}\" data-end=\"{end:.3}\"></div></section>\n"
        ));
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{title}</title>\n<style>{PLAYER_CSS}</style>\n<style>{PAGE_CSS}</style>\n</head><body>\n\
         <h1>{title}</h1>\n\
         <table id=\"commands\"><tr><th>channel</th><th>kind</th><th>command</th><th>started</th><th>duration</th><th>exit</th></tr>\n{rows}</table>\n\
         {sections}\
         <script type=\"application/json\" id=\"codext-records\">{json}</script>\n\
         <script>{PLAYER_JS}</script>\n<script>{START}</script>\n</body></html>\n",
        csp = html(&policy()),
        title = html(&escape(title)),
        json = script_json(&serde_json::Value::Array(casts)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_vendored_player_then_each_file_matches_its_recorded_sha256() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/asciinema-player/");
        let mut checked = 0;
        for line in PLAYER_VERSION.lines() {
            if let Some((file, hex)) = line
                .strip_prefix("sha256 ")
                .and_then(|l| l.split_once(": "))
            {
                let bytes = std::fs::read(format!("{dir}{file}")).unwrap();
                let got: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(got, hex, "{file}");
                checked += 1;
            }
        }
        assert_eq!(checked, 3);
        assert!(PLAYER_VERSION.contains("license: Apache-2.0"));
        assert!(PLAYER_VERSION.lines().any(|l| l.starts_with("version: 3.")));
    }

    #[test]
    fn given_script_closing_text_then_the_embedded_json_cannot_end_its_element() {
        let hostile = "</script><img src=x onerror=alert(1)><!--<script>\u{2028}&amp;";
        let out = script_json(&serde_json::json!([hostile]));
        assert!(!out.contains('<') && !out.contains('>') && !out.contains('&'));
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back[0], hostile);
        assert_eq!(
            html("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }

    #[test]
    fn given_a_known_text_then_its_csp_hash_is_the_standard_base64_sha256() {
        // printf 'abc' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            csp_hash("abc"),
            "'sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0='"
        );
        assert!(policy().contains("default-src 'none'"));
    }
}
