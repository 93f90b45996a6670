//! Entry point of `codext-helper`; everything lives in the library.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(codext_helper::cli::main());
}
