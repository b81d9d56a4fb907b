//! Follows the active namespace of the read model (a replay's switch, see the
//! projector's `namespace` module): the pointer row is read at start and again on every
//! `NOTIFY` of a switch (and every second, in case a notification was missed while the
//! listener reconnected). On a change, a pool for the new schema is opened first and then
//! [`Views::switch`] swaps pool and key prefix in one atomic store: a request uses one
//! namespace throughout. The old pool is closed only after a grace period, so requests
//! already running on it finish.

use std::time::Duration;

use read_model::namespace::{active, notify_channel, ActiveNamespace};
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::configuration::Config;
use crate::views::{Namespace, Views};

/// How long a replaced pool stays open for the requests still using it.
const GRACE: Duration = Duration::from_secs(30);

/// Serves the active namespace if a replay switched away from the configured one.
pub async fn resolve(config: &Config, views: &Views) -> anyhow::Result<()> {
    if let Some(ns) = active(&views.pool(), &config.database.schema).await? {
        adopt(config, views, ns).await?;
    }
    Ok(())
}

/// Follows switches until `shutdown`.
pub async fn run(config: Config, views: Views, shutdown: CancellationToken) {
    let channel = notify_channel(&config.database.schema);
    let mut listener: Option<PgListener> = None;
    while !shutdown.is_cancelled() {
        if listener.is_none() {
            listener = listen(&config.database.url, &channel).await;
        }
        match active(&views.pool(), &config.database.schema).await {
            Ok(Some(ns))
                if ns.id != views.namespace().id && ns.schema != current_schema(&views) =>
            {
                if let Err(e) = adopt(&config, &views, ns).await {
                    tracing::warn!(error = %e, "cannot open the new namespace yet");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "namespace pointer unreadable"),
        }
        let wait = async {
            match listener.as_mut() {
                Some(l) => {
                    if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(1), l.recv()).await
                    {
                        listener = None;
                    }
                }
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wait => {}
        }
    }
}

fn current_schema(views: &Views) -> String {
    views.namespace().schema.clone()
}

async fn adopt(config: &Config, views: &Views, ns: ActiveNamespace) -> anyhow::Result<()> {
    if ns.schema == current_schema(views) && ns.key_prefix == views.prefix() {
        views.set_namespace_id(&ns.id);
        return Ok(());
    }
    let pool = read_model::connect_read_only(
        &config.database.url,
        &ns.schema,
        config.database.max_connections,
    )
    .await?;
    sqlx::query("SELECT 1 FROM applied LIMIT 1")
        .execute(&pool)
        .await?;
    let old = views.switch(Namespace {
        id: ns.id.clone(),
        schema: ns.schema.clone(),
        pool,
        prefix: ns.key_prefix.clone(),
    });
    tracing::info!(from = %old.id, to = %ns.id, schema = %ns.schema, "serving another namespace");
    tokio::spawn(async move {
        tokio::time::sleep(GRACE).await;
        old.pool.close().await;
    });
    Ok(())
}

async fn listen(url: &str, channel: &str) -> Option<PgListener> {
    let mut listener = PgListener::connect(url).await.ok()?;
    listener.listen(channel).await.ok()?;
    Some(listener)
}
