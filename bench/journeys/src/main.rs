//! Load test of whole customer journeys with goose: each virtual customer logs in with
//! its own demo account from its own loopback address and walks the seed's user
//! stories with think times (see `journey.rs`). goose's own options (`--host`,
//! `--users`, `--increase-rate`, `--run-time`, `--report-file`, ...) are taken from the
//! command line; ours from the environment:
//!
//! - `JOURNEYS_SCENARIO`: `customer` (the default) or `bare` (the same customers and
//!   think times against `bench`'s bare-http server: the HTTP ceiling of the machine).
//! - `JOURNEYS_FIRST_CUSTOMER` (1), `JOURNEYS_OWN_ADDRESSES` (`true`),
//!   `JOURNEYS_THINK_MS` (`2000-6000`: the pause between two steps),
//!   `JOURNEYS_WINDOW_SECS` (30: the timeline's resolution).
//! - `JOURNEYS_SUMMARY`: where the JSON summary goes (`journeys-summary.json`);
//!   `JOURNEYS_ACCEPTED`: where the accepted changes' request ids go, one a line, for
//!   the end-of-run check that each ended exactly once (`journeys-accepted.txt`).
//!
//! `bench/journeys.sh` starts a stack with enough demo customers, runs this and adds
//! what only the machine knows (CPU, memory, cache hits, consumer lag, the database's
//! count of how each change ended). Run it through `infra/local/stack load`.

mod journey;
mod record;

use std::time::Duration;

use anyhow::Context;
use goose::prelude::*;

use crate::journey::{
    bare, bare_start, bill, change, histories, log_in, log_out, menu, products, Settings,
};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn think_times() -> anyhow::Result<(Duration, Duration)> {
    let spec = env_or("JOURNEYS_THINK_MS", "2000-6000");
    let (min, max) = spec
        .split_once('-')
        .context("JOURNEYS_THINK_MS is <min>-<max> in milliseconds")?;
    Ok((
        Duration::from_millis(min.trim().parse()?),
        Duration::from_millis(max.trim().parse()?),
    ))
}

fn customer_scenario(min: Duration, max: Duration) -> Result<Scenario, GooseError> {
    Ok(scenario!("customer")
        .set_wait_time(min, max)?
        .register_transaction(transaction!(log_in).set_on_start().set_name("login"))
        .register_transaction(transaction!(menu).set_name("menu").set_weight(2)?)
        .register_transaction(transaction!(bill).set_name("bill").set_weight(6)?)
        .register_transaction(transaction!(products).set_name("products").set_weight(2)?)
        .register_transaction(transaction!(change).set_name("change").set_weight(1)?)
        .register_transaction(
            transaction!(histories)
                .set_name("histories")
                .set_weight(1)?,
        )
        .register_transaction(transaction!(log_out).set_on_stop().set_name("logout")))
}

fn bare_scenario(min: Duration, max: Duration) -> Result<Scenario, GooseError> {
    Ok(scenario!("bare")
        .set_wait_time(min, max)?
        .register_transaction(transaction!(bare_start).set_on_start())
        .register_transaction(transaction!(bare).set_name("bare")))
}

/// The table for people: one row per step.
fn print_table(summary: &record::Summary) {
    println!(
        "\n{:<12} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}  errors",
        "step", "requests", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (step, s) in &summary.steps {
        let name = serde_json::to_value(step).unwrap_or_default();
        let errors: Vec<String> = s.errors.iter().map(|(e, n)| format!("{n} x {e}")).collect();
        println!(
            "{:<12} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}  {}",
            name.as_str().unwrap_or("?"),
            s.requests,
            s.per_second,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.max_ms,
            if errors.is_empty() {
                "-".into()
            } else {
                errors.join(", ")
            }
        );
    }
    let c = &summary.changes;
    println!(
        "changes: {} accepted, {} COMPLETED, {} FAILED, {} unfinished; {} not eligible",
        c.accepted, c.completed, c.failed, c.unfinished, c.not_eligible
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (min, max) = think_times()?;
    journey::configure(Settings {
        first_customer: env_or("JOURNEYS_FIRST_CUSTOMER", "1").parse()?,
        own_addresses: env_or("JOURNEYS_OWN_ADDRESSES", "true").parse()?,
        follow_deadline: Duration::from_secs(60),
        follow_every: Duration::from_millis(250),
    });
    let scenario = match env_or("JOURNEYS_SCENARIO", "customer").as_str() {
        "customer" => customer_scenario(min, max)?,
        "bare" => bare_scenario(min, max)?,
        other => anyhow::bail!("JOURNEYS_SCENARIO is customer or bare, not {other}"),
    };
    record::start(Duration::from_secs(
        env_or("JOURNEYS_WINDOW_SECS", "30").parse()?,
    ));
    GooseAttack::initialize()?
        .register_scenario(scenario)
        .execute()
        .await?;

    let summary = record::summary();
    let path = env_or("JOURNEYS_SUMMARY", "journeys-summary.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {path}"))?;
    let ids: String = record::accepted_ids()
        .iter()
        .map(|id| format!("{id}\n"))
        .collect();
    let path = env_or("JOURNEYS_ACCEPTED", "journeys-accepted.txt");
    std::fs::write(&path, ids).with_context(|| format!("writing {path}"))?;
    print_table(&summary);
    Ok(())
}
