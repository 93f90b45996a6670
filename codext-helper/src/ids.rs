//! Typed user, group and process ids.
//!
//! The killer takes a temporary user's uid, the killer account's uid and
//! its gid; sweeps take a uid; the watcher takes a pid. As bare `u32`s any
//! two of them can be swapped without a word from the compiler, and a
//! swapped uid in a kill or a sweep hits the wrong account. Each id here is
//! its own type: converting needs an explicit `from_raw`/`as_raw` at the
//! edge (a parsed file, a system call), and nowhere in between.
//!
//! They serialise as the bare number (`#[serde(transparent)]`), so state
//! and audit formats do not change when a field adopts one.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(u32);

        impl $name {
            /// The id with this number.
            pub const fn from_raw(raw: u32) -> $name {
                $name(raw)
            }

            /// Its number, for a system call or a file format.
            pub const fn as_raw(self) -> u32 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<$name, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

id_type!(
    /// A user id.
    Uid
);
id_type!(
    /// A group id.
    Gid
);
id_type!(
    /// A process id, as the helper's PID namespace numbers it.
    Pid
);

impl Uid {
    /// root.
    pub const ROOT: Uid = Uid(0);

    /// True for uid 0.
    pub const fn is_root(self) -> bool {
        self.0 == 0
    }
}

impl Gid {
    /// True for gid 0.
    pub const fn is_root(self) -> bool {
        self.0 == 0
    }
}

impl Pid {
    /// The pid `SO_PEERCRED` (or `fork`) reports, if it names a process:
    /// 0 means the peer is outside the helper's PID namespace, and no
    /// negative number is a process.
    pub fn from_kernel(raw: i32) -> Option<Pid> {
        u32::try_from(raw).ok().filter(|p| *p > 0).map(Pid)
    }

    /// As `pid_t`, for a system call; `None` above `i32::MAX` (never a
    /// real pid: the kernel's limit is 2^22).
    pub fn as_pid_t(self) -> Option<i32> {
        i32::try_from(self.0).ok().filter(|p| *p > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_kernel_pids_then_only_positive_ones_name_a_process() {
        assert_eq!(Pid::from_kernel(4242), Some(Pid::from_raw(4242)));
        assert_eq!(Pid::from_kernel(0), None);
        assert_eq!(Pid::from_kernel(-1), None);
        assert_eq!(Pid::from_raw(0).as_pid_t(), None);
        assert_eq!(Pid::from_raw(u32::MAX).as_pid_t(), None);
        assert_eq!(Pid::from_raw(7).as_pid_t(), Some(7));
    }

    #[test]
    fn given_ids_then_they_serialise_and_print_as_bare_numbers() {
        assert_eq!(
            serde_json::to_string(&Uid::from_raw(59001)).unwrap(),
            "59001"
        );
        let g: Gid = serde_json::from_str("59000").unwrap();
        assert_eq!(g, Gid::from_raw(59000));
        assert_eq!(Uid::from_raw(59001).to_string(), "59001");
        assert_eq!("12".parse::<Pid>().unwrap(), Pid::from_raw(12));
        assert!(Uid::ROOT.is_root() && !Uid::from_raw(1).is_root());
    }
}
