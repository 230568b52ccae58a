//! cli tests
use crate::support::*;
