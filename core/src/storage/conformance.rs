//! The storage conformance suite (written next).
