//! `openapi-subset FULL.json OUT.json`: cut the part of DigitalOcean's OpenAPI description
//! that the emulator validates against out of a full (bundled) description
//! ([`codext_do_emulator::subset`]); `tests/do-emulator/openapi/regenerate.sh` runs it.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [full, out] = args.as_slice() else {
        eprintln!("usage: openapi-subset FULL.json OUT.json");
        return ExitCode::from(2);
    };
    let run = || -> Result<(), String> {
        let text = std::fs::read_to_string(full).map_err(|e| format!("reading {full}: {e}"))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{full} is not JSON: {e}"))?;
        let cut = codext_do_emulator::subset::subset(&value)?;
        std::fs::write(out, codext_do_emulator::subset::to_bytes(&cut))
            .map_err(|e| format!("writing {out}: {e}"))
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("openapi-subset: {e}");
            ExitCode::FAILURE
        }
    }
}
