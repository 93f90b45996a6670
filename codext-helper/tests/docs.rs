//! The documents that describe the code, checked against it: the life of a
//! temporary user in docs/PROTOCOL.md against the lifecycle table
//! (`lifecycle::table::Phase`), and the README's first screen against what
//! CI runs (`.ci/run`).

use codext_helper::lifecycle::Phase;

const PROTOCOL: &str = include_str!("../../docs/PROTOCOL.md");
const README: &str = include_str!("../../README.md");
const CI_RUN: &str = include_str!("../../.ci/run");

/// The code block right after PROTOCOL.md's "Life of a temporary user"
/// heading.
fn state_diagram() -> &'static str {
    let section = PROTOCOL
        .split_once("## Life of a temporary user")
        .map(|(_, rest)| rest)
        .expect("PROTOCOL.md has a section \"Life of a temporary user\"");
    let block = section
        .split_once("```\n")
        .map(|(_, rest)| rest)
        .expect("the section opens with a code block");
    block
        .split_once("```")
        .map(|(diagram, _)| diagram)
        .expect("the code block ends")
}

/// The nodes of the diagram's first line, in order:
/// `issue ─► pending ─answer─► armed ─password─► …` gives
/// `issue, pending, armed, …`.
fn main_line_nodes(diagram: &str) -> Vec<String> {
    let first = diagram.lines().next().unwrap_or_default();
    first
        .split('►')
        .map(|segment| {
            segment
                .trim()
                .split(" ─")
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn given_the_protocols_state_diagram_then_its_phases_are_exactly_the_lifecycle_tables_in_order() {
    let diagram = state_diagram();
    let nodes = main_line_nodes(diagram);
    let phases: Vec<String> = Phase::ALL.iter().map(|p| p.as_str().to_string()).collect();
    assert_eq!(
        nodes.first().map(String::as_str),
        Some("issue"),
        "{nodes:?}"
    );
    assert_eq!(
        nodes.last().map(String::as_str),
        Some("(gone)"),
        "{nodes:?}"
    );
    assert_eq!(
        nodes[1..nodes.len() - 1],
        phases[..],
        "docs/PROTOCOL.md's state diagram and codext-helper/src/lifecycle/table.rs disagree"
    );
}

#[test]
fn given_every_phase_of_the_table_then_the_protocol_explains_it_below_the_diagram() {
    let section = PROTOCOL
        .split_once("## Life of a temporary user")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or_default())
        .unwrap_or_default();
    for phase in Phase::ALL {
        let bullet = format!("* **{}**:", phase.as_str());
        assert!(
            section.contains(&bullet),
            "docs/PROTOCOL.md says nothing under the diagram about {bullet}"
        );
    }
}

#[test]
fn given_the_readme_then_it_fits_150_lines_with_both_commands_on_its_first_screen() {
    let lines: Vec<&str> = README.lines().collect();
    assert!(lines.len() <= 150, "README.md has {} lines", lines.len());
    let first_screen = lines
        .iter()
        .take(40)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    for command in ["scripts/demo.sh", "scripts/test.sh"] {
        assert!(
            first_screen
                .lines()
                .any(|l| l.trim_start().starts_with(command)),
            "{command} is not a command line on the README's first 40 lines"
        );
    }
    assert!(
        first_screen.contains("codext-helper setup"),
        "the install is not on the README's first screen"
    );
}

#[test]
fn given_the_ci_entry_point_then_it_runs_exactly_the_readmes_test_command() {
    let commands: Vec<&str> = CI_RUN
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !l.starts_with("set ") && !l.starts_with("cd "))
        .collect();
    assert_eq!(
        commands,
        ["exec scripts/test.sh"],
        ".ci/run runs {commands:?}"
    );
    assert!(README
        .lines()
        .any(|l| l.split('#').next().unwrap_or_default().trim() == "scripts/test.sh"));
}

/// The module's shipped timeout, read from its source (pam_codext is a
/// cdylib this crate does not link).
fn pam_default_timeout_secs() -> u64 {
    include_str!("../../pam_codext/src/options.rs")
        .split("pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .expect("pam_codext/src/options.rs declares DEFAULT_TIMEOUT in seconds")
}

#[test]
fn given_the_shipped_defaults_then_the_helper_gives_up_a_queued_connection_before_the_module_does_and_pam_d_says_the_default(
) {
    let secs = pam_default_timeout_secs();
    assert!(
        codext_helper::daemon::SLOT_WAIT < std::time::Duration::from_secs(secs),
        "a connection waits {:?} for a slot, the module only {secs} s",
        codext_helper::daemon::SLOT_WAIT
    );
    let pam = include_str!("../../pam.d/codext");
    assert!(
        pam.contains(&format!("#   timeout={secs} ")),
        "pam.d/codext does not document the module's default timeout={secs}"
    );
}
