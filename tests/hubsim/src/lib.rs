//! hubsim: a local fake model hub.
//!
//! Serves synthetic (or any) model repositories over both the Hugging Face Hub and the ModelScope
//! download protocols, with fault injection, so that ferry's tests, benchmarks and the offline demo
//! run against the real clients' wire protocol without the internet.

pub mod generate;
pub mod serve;
