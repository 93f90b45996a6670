//! Unit tests of the PAM stack edits, the job rule, path checks and
//! line removal, on texts; no root needed.

use super::pam::{is_rule, selinux};
use super::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const DEBIAN_SSHD: &str = "# PAM configuration for the Secure Shell service\n\n\
    # Standard Un*x authentication.\n@include common-auth\n\n\
    account    required     pam_nologin.so\n@include common-account\n\n\
    session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so close\n\
    session    required     pam_loginuid.so\n\
    session    optional     pam_keyinit.so force revoke\n@include common-session\n\
    session    optional     pam_mail.so standard noenv # [1]\n\
    session    required     pam_limits.so\n\
    session    required     pam_env.so # [1]\n\
    session    required     pam_env.so user_readenv=1 envfile=/etc/default/locale\n\
    # SELinux needs to intervene at login time\n\
    session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so open\n\n\
    @include common-password\n";

fn rules(text: &str) -> Vec<PamLine> {
    text.lines()
        .filter_map(parse_pam_line)
        .filter(is_rule)
        .collect()
}

#[test]
fn given_the_debian_stack_then_codext_goes_first_and_its_session_right_after_selinux_close() {
    let (out, added) = plan_pam_sshd(DEBIAN_SSHD).unwrap();
    assert_eq!(added, [INCLUDE_AUTH, INCLUDE_SESSION]);
    let r = rules(&out);
    assert_eq!(r[0], PamLine::Include("codext".into()));
    assert_eq!(r[1], PamLine::Include("common-auth".into()));
    let close = r.iter().position(|l| selinux(l, "close")).unwrap();
    assert_eq!(r[close + 1], PamLine::Include("codext-session".into()));
    // Before pam_loginuid, pam_keyinit, common-session and every pam_env
    // (which reads the user's ~/.pam_environment).
    let session_at = close + 1;
    for later in ["pam_loginuid.so", "pam_keyinit.so", "pam_env.so"] {
        let first = r
            .iter()
            .position(|l| matches!(l, PamLine::Rule { module, .. } if module == later))
            .unwrap();
        assert!(first > session_at, "{later} runs before codext-session");
    }
    let common = r
        .iter()
        .position(|l| *l == PamLine::Include("common-session".into()));
    assert!(common.unwrap() > session_at);
    // Nothing else changed: removing the two lines gives the original back.
    assert_eq!(remove_lines(&out, &added), (DEBIAN_SSHD.to_owned(), 2));
}

#[test]
fn given_the_session_include_at_the_earlier_place_after_pam_env_then_it_moves_and_unsetup_still_finds_it(
) {
    // The earlier release's placement: just before pam_selinux open.
    let old = DEBIAN_SSHD.replacen(
        "@include common-auth\n",
        "@include codext\n@include common-auth\n",
        1,
    );
    let at = old.find("session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so open").unwrap();
    let old = format!("{}{INCLUDE_SESSION}\n{}", &old[..at], &old[at..]);
    let (out, added) = plan_pam_sshd(&old).unwrap();
    assert_eq!(added, [INCLUDE_SESSION]);
    let r = rules(&out);
    let close = r.iter().position(|l| selinux(l, "close")).unwrap();
    assert_eq!(r[close + 1], PamLine::Include("codext-session".into()));
    assert_eq!(out.matches(INCLUDE_SESSION).count(), 1);
    // Removing codext's lines by text (unsetup after an edit) leaves the stock file.
    let (stock, found) = remove_lines(&old, &[INCLUDE_AUTH.into(), INCLUDE_SESSION.into()]);
    assert_eq!((stock.as_str(), found), (DEBIAN_SSHD, 2));
    let (stock, found) = remove_lines(&out, &[INCLUDE_AUTH.into(), INCLUDE_SESSION.into()]);
    assert_eq!((stock.as_str(), found), (DEBIAN_SSHD, 2));
}

#[test]
fn given_a_wired_stack_then_planning_again_changes_nothing() {
    let (once, _) = plan_pam_sshd(DEBIAN_SSHD).unwrap();
    let (twice, added) = plan_pam_sshd(&once).unwrap();
    assert_eq!(twice, once);
    assert!(added.is_empty());
}

#[test]
fn given_stacks_of_unknown_shape_then_each_is_refused_with_the_reason() {
    for (text, why) in [
        (
            DEBIAN_SSHD.replace(
                "@include common-auth\n",
                "auth required pam_env.so\n@include common-auth\n",
            ),
            "first rule",
        ),
        (
            DEBIAN_SSHD.replace("pam_selinux.so close", "pam_foo.so close"),
            "pam_selinux.so close",
        ),
        (
            DEBIAN_SSHD.replace(
                "pam_selinux.so open\n",
                "pam_selinux.so open\nsession required pam_selinux.so open\n",
            ),
            "exactly one",
        ),
        (
            format!("@include codext\n@include codext\n{DEBIAN_SSHD}"),
            "more than once",
        ),
        (
            DEBIAN_SSHD.replace(
                "@include common-auth\n",
                "@include common-auth\n@include codext\n",
            ),
            "not the first rule",
        ),
        (
            DEBIAN_SSHD.replace(
                "session    required     pam_limits.so\n",
                "session    required     pam_limits.so \\\n",
            ),
            "not a PAM line",
        ),
        (String::new(), "no rules"),
    ] {
        let err = plan_pam_sshd(&text).unwrap_err().to_string();
        assert!(err.contains(why) && err.contains("by hand"), "{why}: {err}");
    }
}

#[test]
fn given_the_job_stacks_then_the_rule_comes_before_common_account_once() {
    let atd =
        "@include common-auth\n@include common-account\nsession    required   pam_loginuid.so\n";
    let (out, added) = plan_job_stack(atd, "/etc/pam.d/atd", "codext").unwrap();
    assert_eq!(added.len(), 2);
    let r = rules(&out);
    assert_eq!(r[1], parse_pam_line(&job_rule("codext")).unwrap());
    assert_eq!(r[2], PamLine::Include("common-account".into()));
    assert_eq!(
        plan_job_stack(&out, "/etc/pam.d/atd", "codext").unwrap(),
        (out.clone(), Vec::new())
    );
    assert_eq!(remove_lines(&out, &added).0, atd);
    let odd = "account required pam_unix.so\n@include common-account\n";
    assert!(plan_job_stack(odd, "/etc/pam.d/cron", "codext").is_err());
}

#[test]
fn given_shipped_pam_files_then_only_the_rules_name_the_module_path() {
    let text = "# pam_codext.so in the folder\nauth [default=die] pam_codext.so\nsession optional pam_codext.so debug # pam_codext.so\n";
    let out = with_module(text, "/opt/x/libpam_codext.so");
    assert_eq!(
        out,
        "# pam_codext.so in the folder\nauth [default=die] /opt/x/libpam_codext.so\nsession optional /opt/x/libpam_codext.so debug # pam_codext.so\n"
    );
    assert_eq!(with_module(text, "pam_codext.so"), text);
}

#[test]
fn given_pam_lines_then_they_parse_as_libpam_reads_them() {
    assert_eq!(parse_pam_line("  # c"), Some(PamLine::Blank));
    assert_eq!(
        parse_pam_line("@include common-auth # x"),
        Some(PamLine::Include("common-auth".into()))
    );
    assert_eq!(
        parse_pam_line("-session [success=ok default=bad] pam_x.so a b"),
        Some(PamLine::Rule {
            kind: "session".into(),
            control: "[success=ok default=bad]".into(),
            module: "pam_x.so".into(),
            args: vec!["a".into(), "b".into()]
        })
    );
    assert_eq!(parse_pam_line("bogus required pam_x.so"), None);
}

#[test]
fn given_nsswitch_texts_then_a_missing_systemd_source_is_named() {
    assert_eq!(nss_problem("passwd:         files systemd\n"), None);
    assert!(nss_problem("passwd: files\n")
        .unwrap()
        .contains("add systemd"));
    assert!(nss_problem("# passwd: files systemd\n")
        .unwrap()
        .contains("no passwd"));
}

#[test]
fn given_paths_then_only_those_nobody_but_root_can_change_pass() {
    let dir = std::env::temp_dir().join(format!("codext-rootonly-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pam_codext.so");
    std::fs::write(&file, b"x").unwrap();
    if !nix::unistd::geteuid().is_root() {
        // A normal user can only make files of its own: refused by owner;
        // a root-owned system file passes. The mode cases need root.
        assert!(root_only_path(&file).is_err());
        assert_eq!(root_only_path(Path::new("/bin/sh")), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The sticky /tmp above is fine.
    assert_eq!(root_only_path(&file), Ok(()));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(root_only_path(&file)
        .unwrap_err()
        .contains("not root's alone"));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(root_only_path(&file)
        .unwrap_err()
        .contains(&dir.display().to_string()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn given_an_edited_file_then_only_our_lines_go() {
    let text = "a\n@include codext\nb\nmine\n";
    assert_eq!(
        remove_lines(text, &["@include codext".into()]),
        ("a\nb\nmine\n".into(), 1)
    );
    assert_eq!(remove_lines("a\n", &["x".into()]), ("a\n".into(), 0));
}
