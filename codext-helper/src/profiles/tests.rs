//! The profiles' checks and the gate's decisions, played as the hostile
//! user would play them (the end-to-end tests in `tests/tests/profiles.rs`
//! run the same through sshd).

use super::gate::{decide, Builtin, Decision};
use super::*;
use crate::config::Config;
use std::path::Path;

fn parse(text: &str) -> Result<Config, String> {
    Config::from_toml_str(text, Path::new("t.toml")).map_err(|e| e.to_string())
}

const CI: &str = r#"
[accounts]
allowed_groups = ["video"]
[profiles.ci]
kind = "commands"
commands = [
  "make test",
  "/usr/bin/id",
  { prefix = "ls", args = "[A-Za-z0-9_][A-Za-z0-9_./-]*", max_args = 3 },
  { prefix = "git log", args = "-n[0-9]+|--oneline" },
]
transfers = ["scp", "rsync"]
groups = ["video"]
sudo = ["/usr/bin/systemctl restart web", "/usr/bin/true"]
"#;

fn ci() -> (Config, Commands) {
    let cfg = parse(CI).unwrap();
    let p = cfg
        .profile(&codext_core::ProfileName::parse("ci").unwrap())
        .unwrap()
        .clone();
    let Body::Commands(c) = p.body else {
        panic!("not commands")
    };
    (cfg, c)
}

const HOME: &str = "/home/user-000000000001";

fn run(c: &Commands, req: &str) -> Decision {
    // Every program exists in /usr/bin, nowhere else.
    decide(
        "ci",
        c,
        Path::new(HOME),
        Some(req.as_bytes()),
        &|p: &Path| p.starts_with("/usr/bin"),
    )
}

fn argv(d: &Decision) -> Vec<String> {
    match d {
        Decision::Exec { argv, .. } => argv.clone(),
        other => panic!("not exec: {other:?}"),
    }
}

fn refused(d: &Decision, why: &str) {
    match d {
        Decision::Refuse(m) => assert!(m.contains(why), "{m:?} lacks {why:?}"),
        other => panic!("not refused ({why}): {other:?}"),
    }
}

#[test]
fn given_allowed_commands_then_each_runs_directly_with_its_words_in_the_home() {
    let (_, c) = ci();
    let d = run(&c, "make test");
    assert_eq!(argv(&d), ["/usr/bin/make", "test"]);
    assert!(matches!(&d, Decision::Exec { cwd, .. } if cwd == Path::new(HOME)));
    assert_eq!(argv(&run(&c, "/usr/bin/id")), ["/usr/bin/id"]);
    assert_eq!(
        argv(&run(&c, "ls  src  docs")),
        ["/usr/bin/ls", "src", "docs"]
    );
    assert_eq!(argv(&run(&c, "ls")), ["/usr/bin/ls"]);
    assert_eq!(
        argv(&run(&c, "git log -n5 --oneline")),
        ["/usr/bin/git", "log", "-n5", "--oneline"]
    );
}

#[test]
fn given_shell_syntax_then_refused_before_any_rule_is_looked_at() {
    let (_, c) = ci();
    for (req, ch) in [
        ("make test; rm -rf ~", ';'),
        ("make test && id", '&'),
        ("make test | sh", '|'),
        ("ls $(id)", '$'),
        ("ls `id`", '`'),
        ("ls >/tmp/x", '>'),
        ("ls 'a b'", '\''),
        ("ls \"a b\"", '"'),
        ("ls *", '*'),
        ("ls ~root", '~'),
        ("ls a\\;b", '\\'),
    ] {
        refused(&run(&c, req), &format!("{ch:?} is refused"));
    }
    for req in [
        "make test\nid",
        "make test\rid",
        "make\ttest",
        "make test\0id",
    ] {
        refused(&run(&c, req), "control character");
    }
    refused(
        &decide("ci", &c, Path::new(HOME), Some(b"ls \xff"), &|_: &Path| {
            true
        }),
        "not UTF-8",
    );
}

#[test]
fn given_dash_dash_tricks_and_other_commands_then_refused_with_what_is_allowed() {
    let (_, c) = ci();
    for req in [
        "ls -la",
        "ls -- -la",
        "ls --color=always",
        "ls a b c d",
        "git log --output=/home/x/.bashrc",
        "git log -- -p",
        "git -c core.pager=sh log",
        "make test -- install",
        "make",
        "make install",
        "sh -c id",
        "bash",
        "/bin/sh",
        "/usr/bin/id -u",
        "id",
        "MAKEFLAGS=x make test",
    ] {
        let d = run(&c, req);
        refused(&d, "is not allowed; allowed: `make test`");
    }
    // No command: no shell either.
    refused(
        &decide("ci", &c, Path::new(HOME), None, &|_: &Path| true),
        "no shell",
    );
}

#[test]
fn given_transfers_then_only_the_listed_ones_and_only_inside_the_transfer_folder() {
    let (_, c) = ci();
    let files = format!("{HOME}/files");
    // Legacy scp: into the folder, by relative or absolute path.
    for (req, target) in [
        ("scp -t up.bin", format!("{files}/up.bin")),
        ("scp -v -t -- sub/up.bin", format!("{files}/sub/up.bin")),
        (&format!("scp -t {files}/x") as &str, format!("{files}/x")),
        ("scp -r -t .", files.clone()),
    ] {
        let a = argv(&run(&c, req));
        assert_eq!(a.first().map(String::as_str), Some("/usr/bin/scp"), "{req}");
        assert_eq!(a.last(), Some(&target), "{req}");
        assert!(a.contains(&"--".to_owned()));
    }
    // Out of it: refused.
    for req in [
        "scp -t /tmp/x",
        "scp -t ../x",
        "scp -t sub/../../x",
        "scp -t /home/user-000000000001/.bashrc",
        "scp -t /home/user-000000000001/files/../.ssh/rc",
        "scp -f /etc/shadow",
        "scp -t a b",
        "scp -o ProxyCommand=x -t a",
        "scp -S /bin/sh -t a",
        "scp up.bin",
    ] {
        let d = run(&c, req);
        assert!(matches!(d, Decision::Refuse(_)), "{req}: {d:?}");
    }
    // rsync: options from the list, paths confined, links munged; -s
    // (paths out of the command line) refused.
    let a = argv(&run(&c, "rsync --server -logDtpre.iLsfxCIvu . tree/"));
    assert_eq!(a[..2], ["/usr/bin/rsync", "--server"]);
    assert!(a.contains(&"--munge-links".to_owned()));
    assert_eq!(a.last(), Some(&format!("{files}/tree")));
    let a = argv(&run(
        &c,
        "rsync --server --sender -logDtpre.iLsfxCIvu . tree/ x",
    ));
    assert!(a.contains(&"--sender".to_owned()));
    for req in [
        "rsync --server -logDtpre.iLsfxCIvu . /tmp/",
        "rsync --server -slogDtpre.iLsfxCIvu . tree/",
        "rsync --server --log-file=/tmp/x -e.iLs . tree/",
        "rsync --server -T /tmp -logDtpr . tree/",
        "rsync --server -logDtpre.iLsfxCIvu . a b",
        "rsync --daemon",
    ] {
        let d = run(&c, req);
        assert!(matches!(d, Decision::Refuse(_)), "{req}: {d:?}");
    }
    // sftp is not on this profile's list (nor is OpenSSH's default scp).
    refused(&run(&c, "/usr/lib/openssh/sftp-server"), "sftp");
    refused(&run(&c, "internal-sftp"), "sftp");
}

#[test]
fn given_sftp_allowed_then_it_starts_in_the_transfer_folder_without_links() {
    let cfg = parse(
        "[profiles.up]\nkind = \"commands\"\ntransfers = [\"sftp\"]\ntransfer_dir = \"in/box\"\n",
    )
    .unwrap();
    let Body::Commands(c) = &cfg
        .profile(&codext_core::ProfileName::parse("up").unwrap())
        .unwrap()
        .body
    else {
        panic!()
    };
    let d = decide(
        "up",
        c,
        Path::new(HOME),
        Some(b"internal-sftp"),
        &|_: &Path| true,
    );
    match d {
        Decision::Exec { argv, cwd, confine } => {
            assert_eq!(
                confine.as_deref(),
                Some(Path::new(HOME).join("in/box").as_path())
            );
            assert_eq!(argv[0], "/usr/lib/openssh/sftp-server");
            assert!(argv.contains(&"symlink,hardlink".to_owned()));
            assert_eq!(cwd, Path::new(HOME).join("in/box"));
        }
        other => panic!("{other:?}"),
    }
    // Options of its own are not the user's to give.
    let d = decide(
        "up",
        c,
        Path::new(HOME),
        Some(b"/usr/lib/openssh/sftp-server -l DEBUG3"),
        &|_: &Path| true,
    );
    assert!(matches!(d, Decision::Exec { ref argv, .. } if !argv.contains(&"DEBUG3".to_owned())));
    refused(
        &decide(
            "up",
            c,
            Path::new(HOME),
            Some(b"/tmp/sftp-server"),
            &|_: &Path| true,
        ),
        "sftp runs only as",
    );
}

#[test]
fn given_the_grant_command_then_the_helper_answers_it_itself() {
    let (_, c) = ci();
    assert_eq!(
        run(&c, "codext-grant linger 600"),
        Decision::Builtin(Builtin::Linger(600))
    );
    refused(&run(&c, "codext-grant linger soon"), "seconds");
    refused(&run(&c, "codext-grant rm -rf"), "usage");
}

#[test]
fn given_a_program_missing_from_the_system_path_then_refused_as_not_installed() {
    let (_, c) = ci();
    let d = decide(
        "ci",
        &c,
        Path::new(HOME),
        Some(b"make test"),
        &|_: &Path| false,
    );
    refused(&d, "not installed");
}

#[test]
fn given_profiles_then_groups_sudo_and_the_drop_in_follow_from_them() {
    let (cfg, _) = ci();
    let p = cfg
        .profile(&codext_core::ProfileName::parse("ci").unwrap())
        .unwrap();
    assert_eq!(p.account_groups(), ["codext-p-ci", "video"]);
    assert!(cfg.profile(&codext_core::ProfileName::shell()).is_some());
    let text = sshd::drop_in(&cfg.profiles, Path::new("/usr/lib/codext/codext-record"));
    assert!(
        text.contains(
            "Match Group codext-p-ci User user-*\n    ForceCommand /usr/lib/codext/codext-record --gate ci\n"
        ),
        "{text}"
    );
    assert!(!text.contains("codext-p-shell"));
    assert_eq!(
        sshd::gate_profile(
            "/usr/lib/codext/codext-record --gate ci",
            Path::new("/usr/lib/codext/codext-record")
        ),
        Some("ci")
    );
    assert_eq!(
        sshd::gate_profile(
            "/tmp/codext-record --gate ci",
            Path::new("/usr/lib/codext/codext-record")
        ),
        None
    );
    let rules = sudoers::text("user-000000000001", "ci", &p.sudo);
    assert!(rules.contains(
        "user-000000000001 ALL=(root) NOPASSWD: /usr/bin/systemctl restart web, /usr/bin/true \"\"\n"
    ));
}

#[test]
fn given_dangerous_profiles_then_each_is_refused_with_the_reason() {
    for (text, why) in [
        ("[profiles.x]\ngroups = [\"docker\"]", "docker socket"),
        ("[profiles.x]\ngroups = [\"sudo\"]", "never given"),
        ("[profiles.x]\ngroups = [\"disk\"]", "never given"),
        ("[profiles.x]\ngroups = [\"adm\"]", "never given"),
        ("[profiles.x]\ngroups = [\"video\"]", "allowed_groups"),
        (
            "[accounts]\nallowed_groups = [\"codext\"]\n[profiles.x]\ngroups = [\"codext\"]",
            "codext's own",
        ),
        ("[profiles.x]\ngroups = [\"codext-p-y\"]", "codext's own"),
        ("[profiles.x]\nsudo = [\"systemctl restart web\"]", "absolute path"),
        ("[profiles.x]\nsudo = [\"/usr/bin/systemctl *\"]", "pattern"),
        ("[profiles.x]\nsudo = [\"/usr/bin/a, /usr/bin/b\"]", "pattern"),
        ("[profiles.x]\nsudo = [\"/usr/bin/../bin/sh\"]", "absolute path"),
        ("[profiles.Bad]\n", "not a profile name"),
        ("[profiles.shell]\nkind = \"commands\"\ncommands = [\"id\"]", "kind shell"),
        ("[profiles.x]\nkind = \"commands\"", "must allow"),
        ("[profiles.x]\nkind = \"commands\"\ncommands = [\"id; sh\"]", "refused"),
        ("[profiles.x]\nkind = \"commands\"\ncommands = [{ prefix = \"ls\", args = \"(\" }]", "args"),
        ("[profiles.x]\nkind = \"commands\"\ncommands = [\"id\"]\nimage = \"x\"", "does not apply"),
        ("[profiles.x]\nkind = \"commands\"\ncommands = [\"id\"]\ntransfer_dir = \"../x\"", "transfer_dir"),
        ("[profiles.x]\ncommands = [\"id\"]", "does not apply"),
        ("[profiles.x]\nkind = \"container\"", "needs `image`"),
        ("[profiles.x]\nkind = \"container\"\nimage = \"--privileged\"", "image"),
        ("[profiles.x]\nkind = \"container\"\nimage = \"a@sha256:12\"", "image"),
        (
            "[profiles.x]\nkind = \"container\"\nimage = \"a\"\nmounts = [{ source = \"/var/run\", target = \"/d\" }]",
            "docker socket",
        ),
        (
            "[profiles.x]\nkind = \"container\"\nimage = \"a\"\nmounts = [{ source = \"/run/docker.sock\", target = \"/d\" }]",
            "docker socket",
        ),
        (
            "[containers]\ndocker_host = \"unix:///srv/d/docker.sock\"\n[profiles.x]\nkind = \"container\"\nimage = \"a\"\nmounts = [{ source = \"/srv/d\", target = \"/d\" }]",
            "docker socket",
        ),
        (
            "[profiles.x]\nkind = \"container\"\nimage = \"a\"\nmounts = [{ source = \"/proc\", target = \"/p\" }]",
            "/proc",
        ),
        (
            "[profiles.x]\nkind = \"container\"\nimage = \"a\"\nmounts = [{ source = \"/\", target = \"/host\" }]",
            "other than /",
        ),
        (
            "[profiles.x]\nkind = \"container\"\nimage = \"a\"\nmounts = [{ source = \"/srv/../etc\", target = \"/e\" }]",
            "absolute",
        ),
        ("[profiles.x]\nkind = \"container\"\nimage = \"a\"\ndevices = [\"/dev/sda\"]", "disks"),
        ("[profiles.x]\nkind = \"container\"\nimage = \"a\"\ndevices = [\"/dev/mem\"]", "memory"),
        ("[profiles.x]\nkind = \"container\"\nimage = \"a\"\ndevices = [\"/etc/shadow\"]", "under /dev"),
        ("[profiles.x]\nkind = \"container\"\nimage = \"a\"\ndisk_mb = 2048", "disk_mb"),
        ("[profiles.x]\nkind = \"container\"\nimage = \"a\"\nnetwork = \"bridge\"", "unknown variant"),
        ("[profiles.x]\nkind = \"container\"\nimage = \"a\"\nprivileged = true", "unknown field"),
        ("[profiles.x]\nkind = \"container\"\nimage = \"a\"\nworkspace = \"/\"", "workspace"),
        (
            "[digitalocean]\nallowed_keys = { \"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\" = [\"gpu\"] }",
            "does not define",
        ),
        (
            "[digitalocean]\nallowed_keys = { \"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\" = [] }",
            "no profile",
        ),
        ("[containers]\ndocker_host = \"tcp://10.0.0.1:2375\"", "unix://"),
    ] {
        let err = parse(text).expect_err(text);
        assert!(
            err.to_lowercase().contains(&why.to_lowercase()),
            "{text:?} gave {err}"
        );
    }
}

#[test]
fn given_allowed_keys_as_a_list_or_a_table_then_each_key_gets_its_profiles() {
    let fp = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let cfg = parse(&format!("[digitalocean]\nallowed_keys = [\"{fp}\"]")).unwrap();
    assert_eq!(
        cfg.digitalocean.allowed_keys.profiles_of(fp),
        Some(vec!["shell".to_owned()])
    );
    let cfg = parse(&format!(
        "{CI}\n[digitalocean.allowed_keys]\n\"{fp}\" = [\"shell\", \"ci\"]\n"
    ))
    .unwrap();
    assert_eq!(
        cfg.digitalocean.allowed_keys.profiles_of(fp),
        Some(vec!["shell".to_owned(), "ci".to_owned()])
    );
    assert_eq!(cfg.digitalocean.allowed_keys.profiles_of("SHA256:x"), None);
}

#[test]
fn given_a_container_profile_then_docker_gets_every_confinement_and_nothing_the_user_chose() {
    let cfg = parse(
        "[profiles.gpu]\nkind = \"container\"\nimage = \"vllm@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n\
         cpus = 2.5\nmemory_mb = 4096\npids = 100\ndisk_mb = 1024\ndevices = [\"/dev/kfd\", \"/dev/dri\"]\n\
         mounts = [{ source = \"/srv/models\", target = \"/models\" }]\nshell = \"/bin/bash\"\n",
    )
    .unwrap();
    let p = cfg
        .profile(&codext_core::ProfileName::parse("gpu").unwrap())
        .unwrap();
    let Body::Container(c) = &p.body else {
        panic!()
    };
    let a = container::run_args(c, "user-000000000001", 59001, 59000, &[44], "gpu");
    let joined = a.join(" ");
    for must in [
        "--user 59001:59000",
        "--group-add 44",
        "--init",
        "--read-only",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--network none",
        "--pids-limit 100",
        "--memory 4096m --memory-swap 4096m",
        "--cpus 2.5",
        "--log-driver none",
        "--pull never",
        "--restart no",
        "--tmpfs /workspace:rw,nosuid,nodev,size=1024m,uid=59001,gid=59000,mode=0700",
        "--device /dev/kfd --device /dev/dri",
        "--mount type=bind,source=/srv/models,target=/models,readonly",
        "--label codext.user=user-000000000001",
        "-- vllm@sha256:",
    ] {
        assert!(joined.contains(must), "{must} missing from {joined}");
    }
    for never in [
        "--privileged",
        "--pid ",
        "--network host",
        "docker.sock",
        "--cap-add",
        "--userns",
    ] {
        assert!(!joined.contains(never), "{never} in {joined}");
    }
    assert_eq!(a.last().map(String::as_str), Some("infinity"));
    let s = container::Session {
        tty: true,
        command: None,
        term: "xterm-256color",
    };
    let e = container::exec_args(c, "user-000000000001", 59001, 59000, &s).join(" ");
    assert!(e.contains("exec --interactive --tty --user 59001:59000 --workdir /workspace"));
    assert!(e.ends_with("codext-user-000000000001 /bin/bash -l"), "{e}");
    let s = container::Session {
        tty: false,
        command: Some("echo $(id) ; exit 3"),
        term: "evil\nTERM",
    };
    let e = container::exec_args(c, "user-000000000001", 59001, 59000, &s);
    assert_eq!(e.last().map(String::as_str), Some("echo $(id) ; exit 3"));
    assert!(
        !e.iter().any(|w| w.contains("evil")),
        "a bad TERM is dropped"
    );
    // A host network only when asked.
    let cfg = parse("[profiles.n]\nkind = \"container\"\nimage = \"ws:1\"\nnetwork = \"host\"\n")
        .unwrap();
    let Body::Container(c) = &cfg
        .profile(&codext_core::ProfileName::parse("n").unwrap())
        .unwrap()
        .body
    else {
        panic!()
    };
    assert!(container::run_args(c, "user-000000000002", 1, 2, &[], "n")
        .join(" ")
        .contains("--network host"));
}
