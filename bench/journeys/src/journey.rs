//! A customer's journey through the seed's user stories, as goose transactions: log in
//! once (with the demo account of the virtual customer's number), open the bill menu,
//! read bills (months read before and months read for the first time), look at the
//! products on offer, validate and request a change and follow it until KOS has
//! answered, read the histories, and log out at the end.
//!
//! Every virtual customer talks from its own loopback address (127.77.x.y), so the
//! per-address and per-customer limits stay on as in production, where every customer
//! comes from their own address through the Ingress.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use goose::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::record::{self, Outcome, Step};

/// How the journeys run (from the environment; see `main.rs`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Virtual customer 0 is demo customer `first_customer` (CUST0001 for 1).
    pub first_customer: usize,
    /// Each customer from its own loopback address (`false`: all from the machine's).
    pub own_addresses: bool,
    /// How long a customer follows a change before calling it unfinished.
    pub follow_deadline: Duration,
    /// Pause between two status reads while following a change.
    pub follow_every: Duration,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

pub fn configure(settings: Settings) {
    SETTINGS.set(settings).expect("configured once");
}

fn settings() -> &'static Settings {
    SETTINGS.get().expect("journey::configure ran first")
}

/// The loopback address customer `n` talks from.
pub fn address_of(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        77,
        (n / 250 % 250) as u8,
        (n % 250 + 1) as u8,
    ))
}

/// The demo account of virtual customer `user_index`.
pub fn account_of(user_index: usize) -> (usize, String) {
    let n = settings().first_customer + user_index;
    (n, format!("CUST{n:04}"))
}

/// Logins a customer tries when each is refused with `Retry-After`.
const LOGIN_ATTEMPTS: usize = 5;

/// A session ends this long before its token expires (a step in flight must not carry a
/// token that lapses on the way).
const SESSION_MARGIN: Duration = Duration::from_secs(10);

/// What a logged-in customer keeps between steps.
#[derive(Debug, Clone)]
struct Customer {
    token: String,
    /// When the session ends (the token's lifetime less [`SESSION_MARGIN`]).
    expires: Instant,
    line: String,
    months: Vec<String>,
    read: HashSet<String>,
}

fn customer(user: &GooseUser) -> Customer {
    user.get_session_data_unchecked::<Customer>().clone()
}

/// A client of its own for the customer, bound to the customer's address.
async fn own_client(user: &mut GooseUser, n: usize) -> TransactionResult {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(2);
    if settings().own_addresses {
        builder = builder.local_address(address_of(n));
    }
    user.set_client_builder(builder).await.map_err(Box::new)
}

/// One request of `step`: recorded with its latency, and its problem code when it
/// failed. `Some(body)` when the answer was a success.
async fn call(
    user: &mut GooseUser,
    step: Step,
    method: GooseMethod,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    idempotency_key: Option<Uuid>,
) -> Result<Option<Value>, Box<TransactionError>> {
    let answer = exchange(user, step, method, path, token, body, idempotency_key).await?;
    Ok(answer.body)
}

/// What a request answered: the body of a success, or the problem's code and the
/// `Retry-After` a refusal carried.
struct Answer {
    body: Option<Value>,
    code: Option<String>,
    retry_after: Option<Duration>,
}

/// A customer's GET of `step` with their token.
async fn get(
    user: &mut GooseUser,
    step: Step,
    path: &str,
    token: &str,
) -> Result<Option<Value>, Box<TransactionError>> {
    call(user, step, GooseMethod::Get, path, Some(token), None, None).await
}

/// [`call`], with the problem's code and `Retry-After` when it failed.
async fn exchange(
    user: &mut GooseUser,
    step: Step,
    method: GooseMethod,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    idempotency_key: Option<Uuid>,
) -> Result<Answer, Box<TransactionError>> {
    let mut builder = user.get_request_builder(&method, path)?;
    if let Some(token) = token {
        builder = builder.bearer_auth(token);
    }
    if let Some(body) = &body {
        builder = builder.json(body);
    }
    if let Some(key) = idempotency_key {
        builder = builder.header("Idempotency-Key", key.to_string());
    }
    let name = serde_json::to_value(step)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name.as_str())
        .set_request_builder(builder)
        .build();
    let started = Instant::now();
    let answer = user.request(request).await?;
    let mut retry_after = None;
    let mut code = None;
    let (outcome, body) = match answer.response {
        Err(error) => {
            code = Some(transport_error(&error));
            (Err(transport_error(&error)), None)
        }
        Ok(response) => {
            let status = response.status();
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs);
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() {
                (Ok(()), Some(body))
            } else {
                let problem = body["code"].as_str().unwrap_or("-").to_owned();
                let error = format!("{} {problem}", status.as_u16());
                code = Some(problem);
                (Err(error), None)
            }
        }
    };
    record::step(step, started.elapsed(), outcome.err());
    Ok(Answer {
        body,
        code,
        retry_after,
    })
}

fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

/// On start: a client from the customer's address, the login, and the bill menu the
/// app opens with.
pub async fn log_in(user: &mut GooseUser) -> TransactionResult {
    let (n, _) = account_of(user.weighted_users_index);
    own_client(user, n).await?;
    sign_in(user).await?;
    menu(user).await
}

/// The login screen: a new token (and session) for the customer.
async fn sign_in(user: &mut GooseUser) -> TransactionResult {
    let (_, account) = account_of(user.weighted_users_index);
    let login = json!({"customerId": account, "password": format!("demo-{account}")});
    // Refused for want of capacity (429 with Retry-After), the customer tries again
    // when told to, as the web app asks them to; each refusal stays an error in the report.
    let mut grant = None;
    for _ in 0..LOGIN_ATTEMPTS {
        let answer = exchange(
            user,
            Step::Login,
            GooseMethod::Post,
            "/api/v1/auth/login",
            None,
            Some(login.clone()),
            None,
        )
        .await?;
        match answer {
            Answer {
                body: Some(body), ..
            } => {
                grant = Some(body);
                break;
            }
            Answer {
                retry_after: Some(wait),
                ..
            } => tokio::time::sleep(wait).await,
            _ => break,
        }
    }
    let known = user.get_session_data::<Customer>().cloned();
    let Some(grant) = grant else {
        // Without a token this customer's journey cannot go on; goose stops nothing, so
        // every later step answers 401 and shows in the report.
        user.set_session_data(Customer {
            token: String::new(),
            expires: Instant::now() + Duration::from_secs(3600),
            line: String::new(),
            months: vec![],
            read: HashSet::new(),
        });
        return Ok(());
    };
    let lifetime = Duration::from_secs(grant["expiresIn"].as_u64().unwrap_or(0));
    let customer = Customer {
        token: grant["accessToken"].as_str().unwrap_or_default().to_owned(),
        expires: Instant::now() + lifetime.saturating_sub(SESSION_MARGIN),
        line: grant["lines"][0].as_str().unwrap_or_default().to_owned(),
        months: vec![],
        read: HashSet::new(),
    };
    // A new session keeps what the customer has already seen (their bill months).
    user.set_session_data(match known {
        Some(known) if !known.months.is_empty() => Customer {
            months: known.months,
            read: known.read,
            ..customer
        },
        _ => customer,
    });
    Ok(())
}

/// The logged-in customer, after logging in again if the session (the token's lifetime)
/// has run out: the web app meets the expired token's 401 and sends the customer to the
/// login screen; here the customer goes there just before, so that the report counts
/// the designed end of a session as a login and not as an error.
async fn session(user: &mut GooseUser) -> Result<Customer, Box<TransactionError>> {
    let c = customer(user);
    if c.token.is_empty() || Instant::now() < c.expires {
        return Ok(c);
    }
    sign_in(user).await?;
    Ok(customer(user))
}

pub async fn menu(user: &mut GooseUser) -> TransactionResult {
    let c = session(user).await?;
    let path = format!("/api/v1/bills/menu?lineNumber={}", c.line);
    if let Some(menu) = get(user, Step::Menu, &path, &c.token).await? {
        let months = menu["months"]
            .as_array()
            .map(|months| {
                months
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        user.get_session_data_unchecked_mut::<Customer>().months = months;
    }
    Ok(())
}

/// A bill: two times in five a month not read yet (while there is one), otherwise one
/// read before.
pub async fn bill(user: &mut GooseUser) -> TransactionResult {
    let c = session(user).await?;
    let unread: Vec<&String> = c.months.iter().filter(|m| !c.read.contains(*m)).collect();
    let (month, step) = if !unread.is_empty() && (c.read.is_empty() || fastrand::u8(0..5) < 2) {
        (
            unread[fastrand::usize(0..unread.len())].clone(),
            Step::BillCold,
        )
    } else if let Some(month) = pick(&c.read) {
        (month, Step::BillWarm)
    } else {
        return Ok(()); // no months (a failed login or menu): shown by those steps
    };
    let path = format!("/api/v1/bills?lineNumber={}&month={month}", c.line);
    if call(
        user,
        step,
        GooseMethod::Get,
        &path,
        Some(&c.token),
        None,
        None,
    )
    .await?
    .is_some()
    {
        user.get_session_data_unchecked_mut::<Customer>()
            .read
            .insert(month);
    }
    Ok(())
}

fn pick(months: &HashSet<String>) -> Option<String> {
    if months.is_empty() {
        return None;
    }
    months.iter().nth(fastrand::usize(0..months.len())).cloned()
}

pub async fn products(user: &mut GooseUser) -> TransactionResult {
    let c = session(user).await?;
    let path = format!("/api/v1/products/available?lineNumber={}", c.line);
    get(user, Step::Products, &path, &c.token).await?;
    Ok(())
}

/// The change story: the offer, the validation, the request, and the status followed
/// until KOS's answer shows on the query side.
pub async fn change(user: &mut GooseUser) -> TransactionResult {
    let c = session(user).await?;
    let path = format!("/api/v1/products/available?lineNumber={}", c.line);
    let Some(offer) = get(user, Step::Products, &path, &c.token).await? else {
        return Ok(());
    };
    if !offer["pendingChange"].is_null() {
        return Ok(()); // one change at a time per line: the customer waits
    }
    let current = offer["currentProduct"]["productCode"]
        .as_str()
        .unwrap_or_default();
    let targets: Vec<&str> = offer["availableProducts"]
        .as_array()
        .map(|products| {
            products
                .iter()
                .filter_map(|p| p["productCode"].as_str())
                .collect()
        })
        .unwrap_or_default();
    if targets.is_empty() {
        return Ok(());
    }
    let change = json!({
        "lineNumber": c.line,
        "currentProductCode": current,
        "targetProductCode": targets[fastrand::usize(0..targets.len())],
    });
    let Some(validation) = call(
        user,
        Step::Validation,
        GooseMethod::Post,
        "/api/v1/product-changes/validation",
        Some(&c.token),
        Some(change.clone()),
        None,
    )
    .await?
    else {
        return Ok(());
    };
    if validation["valid"] != true {
        record::not_eligible();
        return Ok(());
    }
    let Some(accepted) = call(
        user,
        Step::Change,
        GooseMethod::Post,
        "/api/v1/product-changes",
        Some(&c.token),
        Some(change),
        Some(Uuid::new_v4()),
    )
    .await?
    else {
        return Ok(());
    };
    let accepted_at = Instant::now();
    let request_id = accepted["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let position = accepted["position"].as_u64().unwrap_or(0);
    let index = record::change_accepted(request_id.parse().unwrap_or_default());
    let status_path = format!("/api/v1/product-changes/{request_id}?minPosition={position}");
    let deadline = accepted_at + settings().follow_deadline;
    // As the web app follows a change (`followRequest`): reads 250 ms apart, growing by
    // half up to 2 s; a transient problem is read again, any other ends the following.
    let mut pause = settings().follow_every;
    loop {
        let status = exchange(
            user,
            Step::Status,
            GooseMethod::Get,
            &status_path,
            Some(&c.token),
            None,
            None,
        )
        .await?;
        let outcome = match status.body.as_ref().and_then(|s| s["status"].as_str()) {
            Some("COMPLETED") => Some(Outcome::Completed),
            Some("FAILED") => Some(Outcome::Failed),
            _ => None,
        };
        if let Some(outcome) = outcome {
            record::step(Step::Completion, accepted_at.elapsed(), None);
            record::change_ended(index, outcome);
            return Ok(());
        }
        let gave_up = match status.code.as_deref() {
            Some(code) if !TRANSIENT.contains(&code) => Some(format!("stopped: {code}")),
            _ if Instant::now() >= deadline => Some("unfinished".to_owned()),
            _ => None,
        };
        if let Some(why) = gave_up {
            record::step(Step::Completion, accepted_at.elapsed(), Some(why));
            record::change_ended(index, Outcome::Unfinished);
            return Ok(());
        }
        // The customer's screen refreshing the status, not a wait on a condition.
        tokio::time::sleep(pause).await;
        pause = (pause * 3 / 2).min(Duration::from_secs(2));
    }
}

/// Problems the web app reads the status again after (`followRequest`).
const TRANSIENT: [&str; 7] = [
    "PROJECTION_BEHIND",
    "REQUEST_NOT_FOUND",
    "SERVICE_UNAVAILABLE",
    "READ_MODEL_UNAVAILABLE",
    "timeout",
    "connect",
    "transport",
];

pub async fn histories(user: &mut GooseUser) -> TransactionResult {
    let c = session(user).await?;
    for path in [
        format!("/api/v1/bills/history?lineNumber={}", c.line),
        format!("/api/v1/lines/{}/product-changes", c.line),
    ] {
        get(user, Step::Histories, &path, &c.token).await?;
    }
    Ok(())
}

pub async fn log_out(user: &mut GooseUser) -> TransactionResult {
    let c = session(user).await?;
    if !c.token.is_empty() {
        call(
            user,
            Step::Logout,
            GooseMethod::Post,
            "/api/v1/auth/logout",
            Some(&c.token),
            None,
            None,
        )
        .await?;
    }
    Ok(())
}

/// The ceiling's journey: a client from the same address, and GETs answered from memory.
pub async fn bare_start(user: &mut GooseUser) -> TransactionResult {
    let (n, _) = account_of(user.weighted_users_index);
    own_client(user, n).await
}

pub async fn bare(user: &mut GooseUser) -> TransactionResult {
    call(user, Step::Bare, GooseMethod::Get, "/", None, None, None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_customer_of_a_large_demo_set_has_an_address_of_its_own() {
        let addresses: HashSet<IpAddr> = (1..=9_999).map(address_of).collect();
        assert_eq!(addresses.len(), 9_999);
        assert!(addresses.iter().all(|a| a.is_loopback()));
    }
}
