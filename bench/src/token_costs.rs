//! What an access token costs on this machine: command-service issuing one (Ed25519
//! signing), a service verifying one it has not seen (the signature and the claims), and
//! one it has (the per-thread cache every request after a session's first takes). The
//! baseline, in the same run, is the same claims as an HS256 token (the algorithm before
//! Ed25519), signed and checked by the same library.
//!
//!   cargo run --release -p bench --bin token-costs [-- --tokens 2000 --rounds 5]
//!
//! Prints the median over the rounds of each operation's mean time, in microseconds.

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use service_kit::auth::{JwtConfig, KeySet, Role, SystemClock, Tokens};

#[derive(Parser)]
struct Args {
    /// Tokens per round.
    #[arg(long, default_value_t = 2000)]
    tokens: usize,
    /// Rounds; the median of their means is printed.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn main() {
    let args = Args::parse();
    let config = JwtConfig::default();
    let issuer = Tokens::new(&config, KeySet::local_dev(), Arc::new(SystemClock));
    let lines = vec!["010-0000-0001".to_owned()];

    let hs_key = b"a-32-byte-or-longer-hmac-secret-for-the-baseline";
    let hs_encoding = EncodingKey::from_secret(hs_key).expect("an HMAC key");
    let hs_decoding = DecodingKey::from_secret(hs_key).expect("an HMAC key");
    let mut hs_validation = Validation::new(Algorithm::HS256);
    hs_validation.set_issuer(&[&config.issuer]);
    hs_validation.set_audience(&[&config.audience]);

    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("EdDSA issue (sign)", vec![]),
        ("EdDSA verify, first use", vec![]),
        ("EdDSA verify, cached", vec![]),
        ("HS256 sign (baseline)", vec![]),
        ("HS256 verify (baseline)", vec![]),
    ];
    for _ in 0..args.rounds {
        // A fresh verifier per round, so its cache starts empty.
        let verifier = Tokens::new(&config, issuer.keys().public_only(), Arc::new(SystemClock));
        let started = Instant::now();
        let issued: Vec<_> = (0..args.tokens)
            .map(|_| issuer.issue("CUST0001", Role::Customer, lines.clone()))
            .collect();
        rows[0].1.push(per_op(started, args.tokens));
        let started = Instant::now();
        for (token, _) in &issued {
            verifier.verify(token).expect("our own token verifies");
        }
        rows[1].1.push(per_op(started, args.tokens));
        let started = Instant::now();
        for (token, _) in &issued {
            verifier.verify(token).expect("our own token verifies");
        }
        rows[2].1.push(per_op(started, args.tokens));

        let started = Instant::now();
        let hs: Vec<String> = issued
            .iter()
            .map(|(_, claims)| {
                jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &hs_encoding)
                    .expect("HS256 signs")
            })
            .collect();
        rows[3].1.push(per_op(started, args.tokens));
        let started = Instant::now();
        for token in &hs {
            jsonwebtoken::decode::<service_kit::auth::Claims>(token, &hs_decoding, &hs_validation)
                .expect("HS256 verifies");
        }
        rows[4].1.push(per_op(started, args.tokens));
    }
    println!("{:<26} {:>14}", "operation", "median µs/op");
    for (name, mut samples) in rows {
        samples.sort_by(f64::total_cmp);
        println!("{name:<26} {:>14.2}", samples[samples.len() / 2]);
    }
}

fn per_op(started: Instant, n: usize) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}
