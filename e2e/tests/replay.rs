//! A replay into a fresh namespace and the switch, with query-service serving throughout.
//! (Moved from query-service's tests: the replay is the analyst's, and e2e may depend on
//! every crate; the harness is e2e's query side, `support/query.rs`.)

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use analyst::replay::{self, ReplayOptions};
use projector::namespace::Control;
use uuid::Uuid;

use crate::support::query::{self as h, spawn_app, TestApp};

/// Publishes a line's history: registration, two bills (one paid), a completed and a
/// failed change. Returns how many events (the apply_log rows they make).
async fn line_history(app: &TestApp, n: u32) -> i64 {
    let line = h::line(n);
    app.kos_facts(&[
        (1, h::registered(&line)),
        (2, h::bill(&line, "2026-01", 65000)),
        (3, h::bill(&line, "2026-02", 66000)),
        (4, h::payment(&line, "2026-01")),
    ])
    .await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    app.line_events(
        &line,
        1,
        &[
            h::requested(&line, a, 1),
            h::sent(&line, a, 1),
            h::completed(&line, a, 2),
            h::requested(&line, b, 3),
            h::sent(&line, b, 3),
            h::failed(&line, b, 4),
        ],
    )
    .await;
    10
}

/// Publishes two products and the lines' histories, then waits until the live projector
/// has applied them all in `schema`. Returns how many events that was.
async fn catalog_and_lines_applied(
    app: &TestApp,
    schema: &str,
    lines: std::ops::Range<u32>,
) -> i64 {
    app.kos_facts(&[
        (1, h::product("5G-STANDARD-001", 69000)),
        (1, h::product("5G-PREMIUM-001", 89000)),
    ])
    .await;
    let mut expected = 2;
    for n in lines {
        expected += line_history(app, n).await;
    }
    wait_applied(app, schema, expected).await;
    expected
}

/// A bill cycle: one more month's bill for each line.
async fn bill_cycle(app: &TestApp, lines: std::ops::Range<u32>, sequence: u64, month: &str) -> i64 {
    for n in lines.clone() {
        let line = h::line(n);
        app.kos_facts(&[(sequence, h::bill(&line, month, 70000))])
            .await;
    }
    lines.len() as i64
}

async fn applied_in(app: &TestApp, schema: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".apply_log"))
        .fetch_one(&app.projector.pool)
        .await
        .unwrap_or(0)
}

async fn wait_applied(app: &TestApp, schema: &str, expected: i64) {
    h::wait_until(
        &format!("{expected} events applied in {schema}"),
        Duration::from_secs(60),
        || async { applied_in(app, schema).await >= expected },
    )
    .await;
}

/// Waits until the live views (schema, key prefix) settle equal to a replayed namespace's
/// (the live projector rewrites Redis just after its commits), then compares them;
/// returns the live dump.
async fn assert_equals_live(
    app: &TestApp,
    (base, prefix): (&str, &str),
    (schema, ns_prefix): (&str, &str),
) -> std::collections::BTreeMap<String, String> {
    let dump =
        |schema, prefix| dump_namespace(&app.projector.pool, schema, &app.projector.redis, prefix);
    h::wait_until(
        "live Redis views settle",
        Duration::from_secs(10),
        || async { dump(base, prefix).await == dump(schema, ns_prefix).await },
    )
    .await;
    let live = dump(base, prefix).await;
    assert_same(&live, &dump(schema, ns_prefix).await);
    live
}

/// Fails with the entries that differ (not the whole dumps).
fn assert_same(
    left: &std::collections::BTreeMap<String, String>,
    right: &std::collections::BTreeMap<String, String>,
) {
    let keys: std::collections::BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    let diff: Vec<_> = keys
        .into_iter()
        .filter(|k| left.get(*k) != right.get(*k))
        .map(|k| (k, left.get(k), right.get(k)))
        .collect();
    assert!(diff.is_empty(), "{} entries differ: {diff:#?}", diff.len());
}

/// Memory for 16 rows: the replay's rows leave memory every few flushes.
fn tiny_memory(options: ReplayOptions) -> ReplayOptions {
    ReplayOptions {
        memory_bytes: 16 * analyst::replay::store::Budget::BYTES_PER_ROW,
        ..options
    }
}

fn options(id: &str) -> ReplayOptions {
    ReplayOptions {
        id: Some(id.into()),
        progress: false,
        flush_every: 25,
        ..Default::default()
    }
}

#[tokio::test]
async fn given_changes_and_a_bill_cycle_when_replayed_and_switched_under_query_load_then_views_equal_the_live_ones_and_no_query_fails(
) {
    // Given: a product, 12 lines with changes and bills, applied live.
    let app = spawn_app().await;
    let config = app.projector.config.clone();
    let base = config.database.schema.clone();
    let mut expected = catalog_and_lines_applied(&app, &base, 1..13).await;

    // A loop of queries runs from here to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let queries = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let (http, address) = (app.http.clone(), app.address.clone());
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let line = h::line(i % 12 + 1);
                let path = match i % 3 {
                    0 => format!("/api/v1/lines/{line}"),
                    1 => format!("/api/v1/bills?lineNumber={line}&month=2026-01"),
                    _ => format!("/api/v1/lines/{line}/product-changes"),
                };
                match http.get(format!("{address}{path}")).send().await {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => {
                        eprintln!("{path}: {}", r.status());
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("{path}: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
        })
    };

    // When: a replay into namespace r1 (not switched yet) ...
    let report = replay::run(&config, options("r1")).await.unwrap();
    // (Bill inquiries of the query loop are applied too.)
    assert!(report.applied as i64 >= expected, "{report:?}");
    let r1 = format!("{base}_r1");
    let prefix = config.redis.key_prefix.clone();
    let r1_prefix = format!("{prefix}r1:");
    // ... then: it equals the live views (the live projector rewrites Redis just after
    // its commit, so the last view may land a moment after the count).
    assert_equals_live(&app, (&base, &prefix), (&r1, &r1_prefix)).await;

    // When: events arrive after the replay's end (applied live to the old namespace
    // only), then the switch, then a bill cycle and more lines.
    expected += bill_cycle(&app, 1..13, 5, "2026-03").await;
    wait_applied(&app, &base, expected).await;
    let control = Control::open(&config, app.projector.pool.clone())
        .await
        .unwrap();
    let previous = control.switch("r1").await.unwrap();
    assert_eq!(previous.id, "base");
    expected += bill_cycle(&app, 1..13, 6, "2026-04").await;
    for n in 13..16 {
        expected += line_history(&app, n).await;
    }

    // Then: the live projector applies everything in r1 (also the events it had applied
    // to the old namespace only), query-service serves r1 ...
    wait_applied(&app, &r1, expected).await;
    let new_line = h::line(15);
    app.wait_for_status(
        &format!("/api/v1/bills?lineNumber={new_line}&month=2026-02"),
        200,
    )
    .await;
    // ... and r1 equals a fresh replay of everything, made by two workers with memory
    // for a few rows only (rows leave memory and are read back; the views are built
    // from the tables).
    let report = replay::run(
        &config,
        ReplayOptions {
            workers: 2,
            ..tiny_memory(options("r2"))
        },
    )
    .await
    .unwrap();
    // (Bill inquiries of the query loop are applied too.)
    assert!(report.applied as i64 >= expected, "{report:?}");
    assert!(report.evicted_rows > 0, "{report:?}");
    let r2 = format!("{base}_r2");
    let served = dump_namespace(&app.projector.pool, &r1, &app.projector.redis, &r1_prefix).await;
    let fresh = dump_namespace(
        &app.projector.pool,
        &r2,
        &app.projector.redis,
        &format!("{prefix}r2:"),
    )
    .await;
    assert_same(&served, &fresh);
    let times: i32 = sqlx::query_scalar(&format!(
        "SELECT coalesce(max(times), 0) FROM \"{r1}\".apply_log"
    ))
    .fetch_one(&app.projector.pool)
    .await
    .unwrap();
    assert_eq!(times, 1, "an event was applied twice in r1");

    stop.store(true, Ordering::Relaxed);
    queries.await.unwrap();
    assert!(ok.load(Ordering::Relaxed) > 10, "the query loop ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed queries during the switch"
    );
    app.stop().await;
}

#[tokio::test]
async fn given_a_replay_stopped_part_way_when_run_again_with_its_id_then_it_goes_on_to_the_live_views_with_no_event_applied_twice(
) {
    // Given: a catalog and 8 lines' histories, applied live.
    let app = spawn_app().await;
    let config = app.projector.config.clone();
    let base = config.database.schema.clone();
    let expected = catalog_and_lines_applied(&app, &base, 1..9).await;

    // When: a replay stops after its first batch (at least 20 events) ...
    let first = replay::run(
        &config,
        ReplayOptions {
            max_events: Some(20),
            ..options("s1")
        },
    )
    .await
    .unwrap();
    // Then: it stopped short of the end, its namespace still building.
    assert!(!first.complete, "{first:?}");
    assert!(
        first.applied >= 20 && (first.applied as i64) < expected,
        "{first:?}"
    );
    let control = Control::open(&config, app.projector.pool.clone())
        .await
        .unwrap();
    assert_eq!(control.get("s1").await.unwrap().unwrap().state, "building");

    // When: it runs again with the same id, by two workers (each going on from its
    // partitions' progress) with memory for a few rows (what the first run wrote is
    // read back from PostgreSQL).
    let second = replay::run(
        &config,
        ReplayOptions {
            workers: 2,
            ..tiny_memory(options("s1"))
        },
    )
    .await
    .unwrap();

    // Then: it applied the rest, each event once, and equals the live views.
    assert!(second.complete, "{second:?}");
    assert_eq!(
        (first.applied + second.applied) as i64,
        expected,
        "{second:?}"
    );
    let s1 = format!("{base}_s1");
    assert_eq!(applied_in(&app, &s1).await, expected);
    let times: i32 = sqlx::query_scalar(&format!(
        "SELECT coalesce(max(times), 0) FROM \"{s1}\".apply_log"
    ))
    .fetch_one(&app.projector.pool)
    .await
    .unwrap();
    assert_eq!(times, 1, "an event was applied twice in s1");
    let prefix = config.redis.key_prefix.clone();
    let s1_prefix = format!("{prefix}s1:");
    let live = assert_equals_live(&app, (&base, &prefix), (&s1, &s1_prefix)).await;
    assert!(live.keys().any(|k| k.starts_with("redis:bill:")));
    app.stop().await;
}

/// A namespace's read tables and views (`analyst::compare::dump`), read through a pool of
/// any schema.
async fn dump_namespace(
    pool: &sqlx::PgPool,
    schema: &str,
    redis: &service_kit::redis_conn::RedisConn,
    prefix: &str,
) -> std::collections::BTreeMap<String, String> {
    analyst::compare::dump(pool, schema, redis, prefix)
        .await
        .unwrap()
}
