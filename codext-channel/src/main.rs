//! `codext-channel`: the DigitalOcean channel process (see the crate's
//! library docs). Thin: arguments, then [`codext_channel::run`].
#![forbid(unsafe_code)]

fn main() {
    codext_channel::init_log();
    let code = match codext_channel::Args::from_env() {
        Ok(args) => match codext_channel::run(&args) {
            Ok(()) => 0,
            Err(e) => {
                codext_core::log_error!("{e}");
                1
            }
        },
        Err(code) => code,
    };
    std::process::exit(code);
}
