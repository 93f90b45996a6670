//! `container` profiles: the container a grant's sessions enter, started
//! by root for the grant and removed with it, through the docker CLI
//! (`containers.docker`, talking to `containers.docker_host`; the helper
//! links no HTTP code, and the temporary user never talks to dockerd).
//!
//! How every container is started ([`run_args`]), whatever the profile:
//! * as the grant's uid:gid (`--user`), with the account's supplementary
//!   groups as numeric gids (`--group-add`: a GPU's render group), under
//!   `--init` (zombies reaped), `--cap-drop ALL`,
//!   `--security-opt no-new-privileges`, never `--privileged`;
//! * the image's file system read-only (`--read-only`); the workspace a
//!   tmpfs of `disk_mb` owned by the uid (the disk limit: a write past it
//!   fails with ENOSPC, and nothing of it lands on the host's disk), `/tmp`
//!   a 64 MiB tmpfs; no log kept (`--log-driver none`: output cannot fill
//!   the host's disk either);
//! * `--memory` (= `--memory-swap`), `--cpus`, `--pids-limit`;
//! * `--network none` unless the profile says `host`; its own PID and IPC
//!   namespaces (the host's `/proc` is not reachable);
//! * only the profile's devices (character devices, checked when it
//!   starts) and bind mounts (never the docker socket or a folder holding
//!   it, `/proc`, `/sys`, `/dev`, `/etc`, `/run`, homes, codext's or
//!   docker's state);
//! * an image by digest or a local tag, never pulled (`--pull never`);
//! * no restart, named `codext-<user>`, labelled `codext.user=<user>` so
//!   that reconcile finds what a crash left.
//!
//! Sessions enter it with `docker exec` as the same uid:gid in the
//! workspace ([`exec_args`]); the helper runs that with the descriptors the
//! session's recorder passes it (see `daemon::entry`).

mod account;
mod args;
mod check;
mod docker;
mod names;

pub use account::{forget_files, Account};
pub use args::{exec_args, run_args, Session};
pub use check::{check, check_host, check_image, FORBIDDEN_SOURCES};
pub use docker::Docker;
pub use names::{files_of, name_of, FILES_DIR, LABEL_USER};
