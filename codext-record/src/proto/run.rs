//! What the recorder runs ([`Run`]), as the optional tail of an accept.

use super::error::ProtoError;
use super::fields::{put_bytes, Reader};
use super::limits::{MAX_ARGV, MAX_ENV, MAX_PATH, MAX_REASON, MAX_TEXT};
use super::messages::Run;

const RUN_EXEC: u8 = 1;
const RUN_PRINT: u8 = 2;
const RUN_ENTER: u8 = 3;

fn put_u16(out: &mut Vec<u8>, n: usize) {
    // Callers cap their counts far below u16::MAX.
    out.extend_from_slice(&(n.min(u16::MAX as usize) as u16).to_be_bytes());
}

pub(super) fn encode_run(out: &mut Vec<u8>, run: &Run) {
    match run {
        Run::Shell => {}
        Run::Exec {
            argv,
            cwd,
            env,
            confine,
        } => {
            out.push(RUN_EXEC);
            let argv = &argv[..argv.len().min(MAX_ARGV)];
            put_u16(out, argv.len());
            for a in argv {
                put_bytes(out, a, MAX_PATH);
            }
            put_bytes(out, cwd, MAX_PATH);
            let env = &env[..env.len().min(MAX_ENV)];
            put_u16(out, env.len());
            for (k, v) in env {
                put_bytes(out, k, MAX_TEXT);
                put_bytes(out, v, MAX_PATH);
            }
            put_bytes(out, confine, MAX_PATH);
        }
        Run::Print { text, code } => {
            out.push(RUN_PRINT);
            put_bytes(out, text, MAX_REASON);
            out.extend_from_slice(&code.to_be_bytes());
        }
        Run::Enter => out.push(RUN_ENTER),
    }
}

pub(super) fn decode_run(r: &mut Reader<'_>) -> Result<Run, ProtoError> {
    Ok(match r.u8()? {
        RUN_EXEC => {
            let n = usize::from(r.u16()?);
            if n == 0 || n > MAX_ARGV {
                return Err(ProtoError::Malformed("argv count"));
            }
            let mut argv = Vec::with_capacity(n);
            for _ in 0..n {
                argv.push(r.bytes(MAX_PATH)?.to_vec());
            }
            let cwd = r.bytes(MAX_PATH)?.to_vec();
            let n = usize::from(r.u16()?);
            if n > MAX_ENV {
                return Err(ProtoError::Malformed("env count"));
            }
            let mut env = Vec::with_capacity(n);
            for _ in 0..n {
                env.push((r.bytes(MAX_TEXT)?.to_vec(), r.bytes(MAX_PATH)?.to_vec()));
            }
            let confine = r.bytes(MAX_PATH)?.to_vec();
            Run::Exec {
                argv,
                cwd,
                env,
                confine,
            }
        }
        RUN_PRINT => Run::Print {
            text: r.bytes(MAX_REASON)?.to_vec(),
            code: r.i32()?,
        },
        RUN_ENTER => Run::Enter,
        _ => return Err(ProtoError::Malformed("unknown run kind")),
    })
}
