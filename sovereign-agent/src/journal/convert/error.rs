//! Why a record does not decode.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("not a valid record: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("record has no body")]
    Empty,
    #[error("invalid {0}")]
    Invalid(&'static str),
}
