//! limits tests
use crate::support::*;
