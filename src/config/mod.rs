//! Configuration: raw file types, validation, and the validated model.

mod model;

pub use model::*;
