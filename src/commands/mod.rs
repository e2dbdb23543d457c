//! One module per subcommand: parse arguments, call a library, print the result (human or --json).

pub mod deploy;
pub mod doctor;
pub mod fetch;
pub mod lint;
pub mod plan;
pub mod sidecar;
pub mod status;
pub mod verify;
pub mod warm;
