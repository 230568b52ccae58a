//! security tests
use crate::support::*;
