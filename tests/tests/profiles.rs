//! Grant profiles, for real: a `commands` grant runs its allowed
//! commands and nothing else — no shell, whatever the agent sends — through
//! sshd's forced gate; its transfers stay in their folder; its groups and
//! sudo rules go with the account. The container profile is in
//! `tests/tests/containers.rs`.

use codext_tests::sandbox_test;
use codext_tests::world::{in_passwd, run, sh, World};
use serde_json::Value;
use std::process::{Command, Output};

/// The profile the tests play against.
const CI: &str = r#"
[accounts]
allowed_groups = ["video"]
[profiles.ci]
kind = "commands"
commands = [
  "id -un",
  "id -Gn",
  "echo allowed",
  "env",
  "sudo -n /usr/bin/id -u",
  { prefix = "ls", args = "[A-Za-z0-9_][A-Za-z0-9_./-]*", max_args = 3 },
  { prefix = "cat", args = "files/[A-Za-z0-9_.-]+" },
]
transfers = ["scp", "rsync"]
groups = ["video"]
sudo = ["/usr/bin/id -u"]
[profiles.inbox]
kind = "commands"
transfers = ["sftp"]
transfer_dir = "in"
"#;

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(out: &Output, what: &str) -> String {
    let (o, e) = text(out);
    assert!(
        out.status.success(),
        "{what} failed ({}): {o}{e}",
        out.status
    );
    o
}

/// Refused by the gate: not run, exit 1, the message says why.
fn refused(out: &Output, what: &str, why: &str) {
    let (o, e) = text(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {o}{e}");
    assert!(e.contains(why), "{what}: {e:?} lacks {why:?}");
    assert!(!o.contains("uid="), "{what} ran something: {o}");
}

/// A stock program run by the agent in its home.
fn agent(w: &World, program: &str, args: &[&str]) -> Output {
    run(w.as_agent(Command::new(program).args(args)))
}

fn gate_lines(w: &World, user: &str) -> Vec<Value> {
    w.audit()
        .into_iter()
        .filter(|e| e["event"] == "gate" && e["user"] == user)
        .collect()
}

/// `codext open --json --profile P --name web1 … PUZZLE` as the agent;
/// its event lines.
fn open(w: &World, puzzle: &str, profile: &str) -> Vec<Value> {
    let out = w.agent_open("web1", &["--profile", profile, "--json", puzzle]);
    ok(&out, "codext open")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event line"))
        .collect()
}

/// `ssh codext-web1 CMD` as the agent: a further channel on the master.
fn on(w: &World, cmd: &str) -> Output {
    agent(w, "ssh", &["codext-web1", cmd])
}

sandbox_test! {
    fn given_a_commands_grant_then_its_commands_run_without_a_shell_and_everything_else_is_refused_with_why() {
        let w = World::with_config(CI);
        let a = w.arm_profile("ci");
        // codext open works on a grant with no shell (its linger goes
        // through the gate's codext-grant), and says the profile.
        let events = open(&w, &a.puzzle, "ci");
        let connected = events.iter().find(|e| e["event"] == "connected").expect("connected");
        assert_eq!(connected["profile"], "ci", "{events:?}");
        assert!(events.iter().any(|e| e["event"] == "solved" && e["profile"] == "ci"));
        // Every further channel on the master meets the gate.
        assert_eq!(ok(&on(&w, "id -un"), "id -un"), format!("{}\n", a.user));
        // Groups: the profile's own and the one it gives (video).
        let groups = ok(&on(&w, "id -Gn"), "id -Gn");
        assert!(groups.contains("codext-p-ci") && groups.contains("video"), "{groups}");
        assert_eq!(ok(&on(&w, "echo allowed"), "echo"), "allowed\n");
        assert_eq!(ok(&on(&w, "ls  files"), "ls files"), "");
        // A sudo rule for exactly one command.
        assert_eq!(ok(&on(&w, "sudo -n /usr/bin/id -u"), "sudo"), "0\n");
        let rules = std::fs::read_to_string(format!("/etc/sudoers.d/codext-{}", a.user)).unwrap();
        assert!(rules.contains("NOPASSWD: /usr/bin/id -u"), "{rules}");

        // The escapes: shell syntax, newlines, `--` and option tricks,
        // other programs, a shell, no command at all.
        for (cmd, why) in [
            ("echo allowed; id", "';' is refused"),
            ("echo allowed && id", "'&' is refused"),
            ("echo allowed | id", "'|' is refused"),
            ("ls $(id)", "'$' is refused"),
            ("ls `id`", "'`' is refused"),
            ("echo allowed\nid", "control character"),
            ("echo allowed\rid", "control character"),
            ("ls -- -la", "is not allowed"),
            ("ls --color=always /", "is not allowed"),
            ("ls -la", "is not allowed"),
            ("ls a b c d", "is not allowed"),
            ("cat /etc/shadow", "is not allowed"),
            ("cat files/../../../etc/shadow", "is not allowed"),
            ("id", "is not allowed"),
            ("bash", "is not allowed"),
            ("/bin/sh -c id", "is not allowed"),
            ("sudo -n /usr/bin/id", "is not allowed"),
            ("sudo -n /bin/sh", "is not allowed"),
            ("internal-sftp", "sftp"),
        ] {
            refused(&on(&w, cmd), cmd, why);
        }
        // What is allowed is said.
        let out = on(&w, "id");
        assert!(text(&out).1.contains("allowed: `id -un`"), "{}", text(&out).1);
        // No command: no shell either (with or without a terminal).
        for tty in ["-T", "-tt"] {
            let out = run(w.as_agent(
                Command::new("ssh")
                    .args([tty, "codext-web1"])
                    .stdin(std::process::Stdio::null()),
            ));
            let (o, e) = text(&out);
            assert_ne!(out.status.code(), Some(0), "{tty}: {o}{e}");
            assert!(format!("{o}{e}").contains("no shell"), "{tty}: {o}{e}");
        }
        // Nothing the environment carries reaches an allowed command: a
        // ~/.pam_environment (root plants it here; the user cannot write
        // its home) — read at the next login, so through a key login — and
        // a variable the client sends.
        sh(&format!(
            "printf 'LD_PRELOAD DEFAULT=/tmp/evil.so\\nBASH_ENV DEFAULT=/tmp/x\\nGIT_CONFIG_PARAMETERS DEFAULT=x\\n' > /home/{u}/.pam_environment && chown {u}: /home/{u}/.pam_environment",
            u = a.user
        ));
        let out = agent(&w, "ssh", &["-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "SetEnv=LC_ALL=../../tmp/x", "codext-web1", "env"]);
        let env = ok(&out, "env");
        for bad in ["LD_PRELOAD", "BASH_ENV", "GIT_CONFIG", "LC_ALL"] {
            assert!(!env.contains(bad), "{bad} reached the command:\n{env}");
        }
        assert!(env.contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), "{env}");
        assert!(env.contains(&format!("HOME=/home/{}", a.user)), "{env}");

        // Every decision is in the audit trail, refusals with their reason.
        let gates = gate_lines(&w, &a.user);
        assert!(gates.iter().any(|g| g["result"] == "exec" && g["request"] == "id -un"), "{gates:?}");
        assert!(gates.iter().any(|g| g["result"] == "refused" && g["request"] == "echo allowed; id"), "{gates:?}");
        assert!(gates.iter().any(|g| g["result"] == "builtin"), "{gates:?}");
        assert!(gates.iter().all(|g| g["profile"] == "ci"));

        // codext close ends the grant: account, group memberships, sudo
        // rule gone.
        ok(&w.agent_cli(&["close", "web1"]), "codext close");
        w.wait_removed(&a.user, a.uid);
        assert!(!in_passwd(&a.user));
        let group = std::fs::read_to_string("/etc/group").unwrap();
        assert!(!group.contains(&a.user), "{group}");
        let gshadow = std::fs::read_to_string("/etc/gshadow").unwrap();
        assert!(!gshadow.contains(&a.user));
        assert!(!std::path::Path::new(&format!("/etc/sudoers.d/codext-{}", a.user)).exists());
        let doctor = World::helper_cli(&["doctor"]);
        let report = String::from_utf8_lossy(&doctor.stdout);
        for check in ["profiles.sshd", "profiles.groups", "profiles.sudo"] {
            assert!(report.lines().any(|l| l.starts_with("ok") && l.contains(check)), "{report}");
        }
    }
}

sandbox_test! {
    fn given_a_commands_grant_with_transfers_then_scp_and_rsync_land_in_its_folder_and_nowhere_else() {
        let w = World::with_config(CI);
        let a = w.arm_profile("ci");
        open(&w, &a.puzzle, "ci");
        ok(&agent(&w, "/bin/sh", &["-c", "echo payload > up.txt && mkdir -p tree/sub && echo deep > tree/sub/f"]), "files");
        // Legacy scp (scp -O): into the transfer folder, both ways.
        ok(&agent(&w, "scp", &["-O", "-q", "up.txt", "codext-web1:up.txt"]), "scp -O up");
        assert_eq!(ok(&on(&w, "cat files/up.txt"), "read back"), "payload\n");
        ok(&agent(&w, "scp", &["-O", "-q", "codext-web1:up.txt", "down.txt"]), "scp -O down");
        assert_eq!(std::fs::read_to_string("/home/agent/down.txt").unwrap(), "payload\n");
        // rsync: into it, links munged.
        ok(&agent(&w, "rsync", &["-a", "-e", "ssh", "tree/", "codext-web1:tree/"]), "rsync");
        assert!(std::path::Path::new(&format!("/home/{}/files/tree/sub/f", a.user)).exists());
        // Outside the folder: refused, nothing written.
        for (program, args, why) in [
            ("scp", vec!["-O", "-q", "up.txt", "codext-web1:/tmp/x"], "outside"),
            ("scp", vec!["-O", "-q", "up.txt", "codext-web1:../.bashrc"], "leaves"),
            ("scp", vec!["-O", "-q", "up.txt", "codext-web1:files/../../.ssh/rc"], "leaves"),
            ("scp", vec!["-O", "-q", "codext-web1:/etc/passwd", "p"], "outside"),
            // OpenSSH's default scp speaks sftp: not on this profile.
            ("scp", vec!["-q", "up.txt", "codext-web1:up2.txt"], ""),
            ("sftp", vec!["-b", "/dev/null", "codext-web1"], ""),
            ("rsync", vec!["-a", "-e", "ssh", "tree/", "codext-web1:/tmp/tree/"], "outside"),
            ("rsync", vec!["-a", "-s", "-e", "ssh", "tree/", "codext-web1:tree2/"], "--protect-args"),
        ] {
            let out = agent(&w, program, &args);
            let (o, e) = text(&out);
            assert!(!out.status.success(), "{program} {args:?} went through: {o}{e}");
            assert!(e.contains(why), "{program} {args:?}: {e}");
        }
        assert!(!std::path::Path::new("/tmp/x").exists());
        assert!(!std::path::Path::new("/tmp/tree").exists());
        assert!(!std::path::Path::new(&format!("/home/{}/.bashrc.new", a.user)).exists());
        assert!(!std::path::Path::new(&format!("/home/{}/files/up2.txt", a.user)).exists());
        assert!(!std::path::Path::new(&format!("/home/{}/.ssh/rc", a.user)).exists());
        ok(&w.agent_cli(&["close", "web1"]), "codext close");
        w.wait_removed(&a.user, a.uid);

        // sftp, where a profile allows it: confined by the recorder, every
        // request judged; OpenSSH's default scp (sftp) too.
        let b = w.arm_profile("inbox");
        open(&w, &b.puzzle, "inbox");
        let inbox = format!("/home/{}/in", b.user);
        ok(&agent(&w, "/bin/sh", &["-c", "printf 'put up.txt\nmkdir sub\nput up.txt sub/x.txt\nrename sub/x.txt sub/y.txt\nls sub\nget up.txt back.txt\n' > ok.batch && sftp -q -b ok.batch codext-web1"]), "sftp inside");
        assert!(std::path::Path::new(&format!("{inbox}/up.txt")).exists());
        assert!(std::path::Path::new(&format!("{inbox}/sub/y.txt")).exists());
        ok(&agent(&w, "scp", &["-q", "up.txt", "codext-web1:scp.txt"]), "scp (sftp) inside");
        assert!(std::path::Path::new(&format!("{inbox}/scp.txt")).exists());
        for (batch, what) in [
            ("put up.txt /tmp/x", "/tmp"),
            ("put up.txt ../.bashrc", "the home"),
            ("cd ..\nput up.txt y", "cd out"),
            ("ls /", "the root"),
            ("get /etc/passwd p", "a read outside"),
            ("symlink /etc/passwd link", "a symlink"),
            ("rename up.txt ../moved", "a rename out"),
        ] {
            let out = agent(&w, "/bin/sh", &["-c", &format!("printf '{batch}\n' > bad.batch && sftp -q -b bad.batch codext-web1")]);
            let (o, e) = text(&out);
            assert!(!out.status.success(), "{what} went through: {o}{e}");
        }
        let out = agent(&w, "scp", &["-q", "up.txt", "codext-web1:/tmp/y"]);
        assert!(!out.status.success(), "scp to /tmp went through");
        assert!(!std::path::Path::new("/tmp/x").exists() && !std::path::Path::new("/tmp/y").exists());
        assert!(!std::path::Path::new(&format!("/home/{}/.bashrc.x", b.user)).exists());
        assert!(!std::path::Path::new(&format!("{inbox}/link")).exists());
        assert!(!std::path::Path::new(&format!("/home/{}/moved", b.user)).exists());
        assert!(!std::path::Path::new("/home/agent/p").exists());
        // The refusals are in the record.
        let shown = String::from_utf8_lossy(&World::helper_cli(&["sessions", "list", "--user", &b.user, "--json"]).stdout).into_owned();
        assert!(shown.contains("sftp"), "{shown}");
        ok(&w.agent_cli(&["close", "web1"]), "codext close");
        w.wait_removed(&b.user, b.uid);
    }
}
