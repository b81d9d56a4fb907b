//! The harness of the end-to-end tests, shared by every test binary of this crate
//! (`mod support;`): the whole system ([`stack`]) and the query side alone ([`query`]).
#![allow(dead_code)] // each test binary uses a part of it

pub mod query;
pub mod stack;
