//! Entry point of `codext`; everything lives in the library.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(codext::cli::main());
}
