//! `setup --data-dir DIR` copies DIR's files into `/etc/pam.d`, the sshd
//! drop-in folder and the limits folder, where sshd trusts them for every
//! login. A folder or file another user can write, or files that say more
//! or less than codext ships (another PAM rule, a weaker control value, an
//! sshd setting for everyone, limits for everyone), are refused before
//! anything is written.

use codext_tests::world::{module_path, sh, World, WORK};
use codext_tests::{repo, sandbox_test, tree};
use std::path::Path;
use std::process::Output;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A root-owned copy of the shipped files, to spoil one way or another.
fn data_copy() -> String {
    let dir = format!("{WORK}/data");
    sh(&format!("rm -rf {dir} && mkdir -p {WORK} && cp -a {} {dir} && chown -R root:root {dir} && chmod -R go-w {dir}", repo().join("pam.d").display()));
    dir
}

fn setup_from(dir: &str) -> Output {
    World::helper_cli(&[
        "setup",
        "--data-dir",
        dir,
        "--module",
        &module_path().display().to_string(),
    ])
}

/// Setup from `dir` is refused, saying `why`, and changes nothing.
fn refused(dir: &str, why: &str) {
    let before = tree::snapshot("/etc");
    let out = setup_from(dir);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains(why), "expected {why:?}: {}", text(&out));
    assert!(text(&out).contains("Nothing was changed"), "{}", text(&out));
    let changed = tree::changed(&before, &tree::snapshot("/etc"));
    assert!(
        changed.is_empty(),
        "setup changed /etc although it refused: {changed:?}"
    );
    assert!(!Path::new("/var/lib/codext/setup.json").exists());
}

sandbox_test! {
    fn given_a_data_dir_or_a_file_in_it_another_user_can_write_then_setup_refuses_and_changes_nothing() {
        let dir = data_copy();
        sh(&format!("chmod 0777 {dir}"));
        refused(&dir, "not root's alone");
        sh(&format!("chmod 0755 {dir} && chmod 0666 {dir}/codext"));
        refused(&dir, &format!("{dir}/codext"));
        sh(&format!("chmod 0644 {dir}/codext && chown nobody {dir}/sshd_config.d/codext.conf"));
        refused(&dir, "codext.conf");
        sh(&format!("chown root {dir}/sshd_config.d/codext.conf"));
        let out = setup_from(&dir);
        assert!(out.status.success(), "{}", text(&out));
    }
}

sandbox_test! {
    fn given_shipped_files_that_say_more_or_less_than_codext_ships_then_setup_refuses_and_changes_nothing() {
        let dir = data_copy();
        let shipped = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        let (codext, drop_in, limits) = (shipped("codext"), shipped("sshd_config.d/codext.conf"), shipped("limits.d/codext.conf"));
        let put = |name: &str, text: &str| std::fs::write(format!("{dir}/{name}"), text).unwrap();
        put("codext", &format!("{codext}auth sufficient pam_permit.so\n"));
        refused(&dir, "pam_permit.so");
        put("codext", &codext.replace("default=die", "default=ignore"));
        refused(&dir, "is not one of the rules codext ships");
        put("codext", &codext);
        put("sshd_config.d/codext.conf", &format!("PermitRootLogin yes\n{drop_in}"));
        refused(&dir, "it would apply to every user");
        put("sshd_config.d/codext.conf", &drop_in.replace("DisableForwarding yes", "DisableForwarding no"));
        refused(&dir, "disableforwarding");
        put("sshd_config.d/codext.conf", &drop_in);
        put("limits.d/codext.conf", &format!("{limits}*    hard   nofile   1\n"));
        refused(&dir, "not the codext group");
        put("limits.d/codext.conf", &limits);
        let out = setup_from(&dir);
        assert!(out.status.success(), "{}", text(&out));
    }
}
