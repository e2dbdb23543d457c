/// Everything that can keep the gate closed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sharder(#[from] ferry_sharder::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What kind of failure this is; the binary maps kinds to exit codes.
    pub fn kind(&self) -> ferry_sharder::ErrorKind {
        match self {
            _ => ferry_sharder::ErrorKind::Other,
        }
    }
}
