//! Command-line parsing shared by `codext` and `codext-helper`: a usage
//! error is one line on stderr and exit status 2, like every other error;
//! `--help` and `--version` print in full and exit 0.

/// Parses the process's arguments into `P`, or returns the exit status
/// after printing clap's message (`program` prefixes an error line).
pub fn parse_args<P: clap::Parser>(program: &str) -> Result<P, i32> {
    match P::try_parse() {
        Ok(parsed) => Ok(parsed),
        Err(e) if e.use_stderr() => {
            eprintln!("{program}: {}", first_line(&e.to_string()));
            Err(2)
        }
        Err(e) => {
            let _ = e.print();
            Err(0)
        }
    }
}

/// The first line of clap's message names the problem; `--help` has the rest.
fn first_line(text: &str) -> &str {
    text.lines()
        .next()
        .unwrap_or("bad arguments")
        .trim_start_matches("error: ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn given_a_clap_error_then_one_line_without_its_prefix_is_kept() {
        let text = "error: unexpected argument '--bogus' found\n\nUsage: codext ...\n";
        assert_eq!(
            super::first_line(text),
            "unexpected argument '--bogus' found"
        );
        assert_eq!(super::first_line(""), "bad arguments");
    }
}
