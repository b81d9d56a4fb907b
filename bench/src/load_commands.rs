//! Load generator for the command side: N clients, each posting product changes on
//! distinct demo lines (a line takes one change at a time), as fast as answers come.
//! Prints accepted changes per second, latency percentiles and the peak resident memory
//! of the service process. With `--query-url`, each client then reads its change back from
//! query-service with the 202's `position` as `minPosition` before its next change, and
//! the time from the 202 to that answer (freshness) is reported too.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    /// Base URL of command-service.
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// First and last demo line number (n of 010-nnnn-nnnn) to use.
    #[arg(long)]
    first_line: u32,
    #[arg(long)]
    last_line: u32,
    /// Pid of the service, to sample its resident memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Print one machine-readable line (key=value) as well.
    #[arg(long)]
    quiet: bool,
    /// Log in as this account (an admin may change every line) before the run.
    #[arg(long, default_value = "admin")]
    user: String,
    #[arg(long, default_value = "demo-admin")]
    password: String,
    /// Base URL of query-service: measure freshness (202 -> visible in the query API).
    #[arg(long)]
    query_url: Option<String>,
}

/// A change that passes the pre-checks for demo line n (bench/generate_facts.py).
fn change_for(n: u32) -> serde_json::Value {
    let (current, target) = if n % 2 == 1 {
        ("5G-STANDARD-001", "5G-PREMIUM-001")
    } else {
        ("5G-LITE-002", "5G-PREMIUM-002")
    };
    json!({
        "lineNumber": format!("010-{:04}-{:04}", n / 10000, n % 10000),
        "currentProductCode": current,
        "targetProductCode": target,
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let next = Arc::new(AtomicU32::new(args.first_line));
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let freshness = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let token = login(&args).await?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .default_headers(headers)
        .build()?;
    let errors = Arc::new(AtomicU32::new(0));
    let peak_rss = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = args.pid.map(|pid| {
        let peak = peak_rss.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (next, histogram, freshness, client, errors) = (
            next.clone(),
            histogram.clone(),
            freshness.clone(),
            client.clone(),
            errors.clone(),
        );
        let url = format!("{}/api/v1/product-changes", args.url);
        let query_url = args.query_url.clone();
        let last = args.last_line;
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut local_freshness = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            loop {
                let mut n = next.fetch_add(1, Ordering::Relaxed);
                // every 25th demo line is suspended: skip it
                if n % 25 == 0 {
                    n = next.fetch_add(1, Ordering::Relaxed);
                }
                if n > last {
                    break;
                }
                let sent = Instant::now();
                let response = client.post(&url).json(&change_for(n)).send().await;
                let micros = sent.elapsed().as_micros() as u64;
                let accepted_at = Instant::now();
                match response {
                    Ok(r) if r.status().as_u16() == 202 => {
                        local.record(micros.max(1)).unwrap();
                        if let Some(query) = &query_url {
                            let answer: serde_json::Value = r.json().await.unwrap_or_default();
                            match visible(&client, query, &answer).await {
                                Some(()) => local_freshness
                                    .record((accepted_at.elapsed().as_micros() as u64).max(1))
                                    .unwrap(),
                                None => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            histogram.lock().await.add(&local).unwrap();
            freshness.lock().await.add(&local_freshness).unwrap();
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    if let Some(s) = sampler {
        s.await?;
    }
    let h = histogram.lock().await;
    let accepted = h.len();
    let rate = accepted as f64 / elapsed.as_secs_f64();
    let p50 = h.value_at_quantile(0.50) as f64 / 1000.0;
    let p99 = h.value_at_quantile(0.99) as f64 / 1000.0;
    let errors = errors.load(Ordering::Relaxed);
    let peak_mib = peak_rss.load(Ordering::Relaxed) as f64 / 1024.0;
    if !args.quiet {
        println!(
            "accepted {accepted} changes in {:.1}s with {} clients: {rate:.0}/s, p50 {p50:.2} ms, p99 {p99:.2} ms, errors {errors}, service peak RSS {peak_mib:.1} MiB",
            elapsed.as_secs_f64(),
            args.clients
        );
    }
    println!("RESULT accepted={accepted} rate={rate:.1} p50_ms={p50:.3} p99_ms={p99:.3} errors={errors} peak_rss_mib={peak_mib:.1}");
    let f = freshness.lock().await;
    if !f.is_empty() {
        let ms = |q| f.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "FRESHNESS changes={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            f.len(),
            ms(0.50),
            ms(0.99),
            f.max() as f64 / 1000.0
        );
    }
    Ok(())
}

/// Reads the accepted change back from query-service, waiting (server side, with
/// `minPosition`) until the projection shows it; None if it never does.
async fn visible(client: &reqwest::Client, query: &str, answer: &serde_json::Value) -> Option<()> {
    let id = answer["requestId"].as_str()?;
    let position = answer["position"].as_i64()?;
    let url = format!("{query}/api/v1/product-changes/{id}?minPosition={position}");
    // 503 PROJECTION_BEHIND ends one bounded wait; ask again, up to 30 s in all.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match client.get(&url).send().await {
            Ok(r) if r.status().as_u16() == 200 => return Some(()),
            Ok(r) if r.status().as_u16() == 503 => continue,
            _ => return None,
        }
    }
    None
}

/// One login before the run: the token is part of every request, as for real clients.
async fn login(args: &Args) -> anyhow::Result<String> {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", args.url))
        .json(&serde_json::json!({"customerId": args.user, "password": args.password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    answer["accessToken"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("login answered without a token: {answer}"))
}
