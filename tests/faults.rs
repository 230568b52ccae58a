//! Faults: clients that vanish mid-response or mid-upload, a disk that
//! fills up while a session bundle arrives, a viewer program that stops
//! reading.
