//! What every sink type answers to the driver: a batch's acknowledgement (how far the
//! receiver took it), and how a failed delivery is told.
use std::{future::Future, pin::Pin};

/// A batch's acknowledgement: Ok once the receiver took all of it, or how far it got. Owns
/// what it waits on, so that several batches can be in flight.
pub type Acknowledgement = Pin<Box<dyn Future<Output = Result<(), Failed>> + Send>>;

/// How far a failed delivery got: the first `delivered` events of the batch were
/// acknowledged (the cursor moves past them), the rest were not.
#[derive(Debug)]
pub struct Failed {
    pub delivered: usize,
    pub error: String,
}

impl Failed {
    pub fn none(error: impl Into<String>) -> Self {
        Failed {
            delivered: 0,
            error: error.into(),
        }
    }
}
