//! The lag-metrics context, now part of [`crate::group_worker`].

pub use crate::group_worker::{GroupConsumer, GroupContext};
