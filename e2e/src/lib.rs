//! End-to-end tests: kos-mock, command-service, projector and query-service running
//! together in one process, each in its own namespace. The tests are in `tests/`, their
//! harness in `tests/support/` (the whole system: `stack.rs`; the query side, a projector
//! and a query-service: `query.rs`), built on the `test-support` crate; `src/bin/` holds
//! kos-mock's binary for the tests that run it as a process of its own.
