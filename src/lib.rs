//! Tether
