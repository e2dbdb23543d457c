/// Everything that can stop a fetch. Each message names the repo, file or URL (never a token)
/// and says what to do next.
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
