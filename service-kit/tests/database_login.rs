//! A service's own PostgreSQL login, made by the migration step with the administrator's
//! connection, against the real server: it owns its schema, including what the
//! administrator made there before, and reaches no other service's.
//!
//! Needs `PHONEBILL_TEST_DATABASE_URL` (an administrator: a superuser, or a `CREATEROLE`
//! login as on Azure), set by `infra/local/stack test`.

use service_kit::database::login::{self, Login, SchemaRights};
use service_kit::database::{connect, DatabaseConfig, DatabaseDefaults};
use sqlx::{Connection, PgConnection};
use test_support::{database_url, Namespace};

/// One login of this test: its role (`l<tag>_<id>`), password and schema.
struct TestLogin {
    login: Login,
    schema: String,
    url: String,
}

impl TestLogin {
    fn new(ns: &Namespace, tag: &str) -> Self {
        let role = format!("l{tag}_{}", ns.id);
        let password = format!("pw-{tag}-{}", ns.id);
        let mut url = url::Url::parse(&database_url()).unwrap();
        url.set_username(&role).unwrap();
        url.set_password(Some(&password)).unwrap();
        Self {
            login: Login {
                role,
                password: Some(password),
            },
            schema: format!("{}_{tag}", ns.schema()),
            url: url.to_string(),
        }
    }

    async fn connect(&self) -> PgConnection {
        let mut conn = PgConnection::connect(&self.url).await.unwrap();
        sqlx::query(&format!("SET search_path TO \"{}\"", self.schema))
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    }
}

async fn admin() -> PgConnection {
    PgConnection::connect(&database_url()).await.unwrap()
}

async fn drop_logins(logins: &[&TestLogin]) {
    let mut admin = admin().await;
    for l in logins {
        let (schema, role) = (&l.schema, &l.login.role);
        for sql in [
            format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
            format!("DROP OWNED BY \"{role}\" CASCADE"),
            format!("DROP ROLE IF EXISTS \"{role}\""),
        ] {
            let _ = sqlx::query(&sql).execute(&mut admin).await;
        }
    }
}

fn is_permission_denied(result: Result<impl std::fmt::Debug, sqlx::Error>) -> bool {
    match result {
        Err(sqlx::Error::Database(e)) => e.code().as_deref() == Some("42501"),
        other => panic!("expected permission denied (42501), got {other:?}"),
    }
}

#[tokio::test]
async fn a_login_owns_its_schema_and_cannot_reach_another_services() {
    // Given two services' logins, each made by the administrator with its own schema
    let ns = Namespace::new();
    let (a, b) = (TestLogin::new(&ns, "a"), TestLogin::new(&ns, "b"));
    let mut admin = admin().await;
    login::ensure(&mut admin, &a.login, &a.schema, SchemaRights::Own)
        .await
        .unwrap();
    login::ensure(&mut admin, &b.login, &b.schema, SchemaRights::Own)
        .await
        .unwrap();

    // When each creates and writes a table in its own schema, as itself
    let mut as_a = a.connect().await;
    let mut as_b = b.connect().await;
    for conn in [&mut as_a, &mut as_b] {
        sqlx::query("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO orders (note) VALUES ('mine')")
            .execute(&mut *conn)
            .await
            .unwrap();
    }

    // Then neither can read, write or create in the other's schema
    let other = format!("\"{}\".orders", b.schema);
    assert!(is_permission_denied(
        sqlx::query(&format!("SELECT count(*) FROM {other}"))
            .execute(&mut as_a)
            .await
    ));
    assert!(is_permission_denied(
        sqlx::query(&format!("DELETE FROM {other}"))
            .execute(&mut as_a)
            .await
    ));
    assert!(is_permission_denied(
        sqlx::query(&format!("CREATE TABLE \"{}\".planted (x int)", b.schema))
            .execute(&mut as_a)
            .await
    ));
    // And without SchemaRights::OwnAndCreate it makes no new schema either
    assert!(is_permission_denied(
        sqlx::query(&format!("CREATE SCHEMA \"{}_x\"", a.schema))
            .execute(&mut as_a)
            .await
    ));
    let b_rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {other}"))
        .fetch_one(&mut as_b)
        .await
        .unwrap();
    assert_eq!(b_rows, 1);
    drop_logins(&[&a, &b]).await;
}

#[tokio::test]
async fn a_schema_the_administrator_built_is_handed_over_whole_with_those_beside_it_and_the_service_connects_to_it(
) {
    // Given a schema the administrator migrated before logins existed: a table with its
    // own sequence, a view and a function, all the administrator's
    let ns = Namespace::new();
    let a = TestLogin::new(&ns, "a");
    let mut admin = admin().await;
    let s = &a.schema;
    for sql in [
        format!("CREATE SCHEMA \"{s}\""),
        format!("CREATE TABLE \"{s}\".events (id bigserial PRIMARY KEY, body text)"),
        format!("CREATE VIEW \"{s}\".recent AS SELECT * FROM \"{s}\".events"),
        format!("CREATE FUNCTION \"{s}\".touch() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
        format!("INSERT INTO \"{s}\".events (body) VALUES ('before')"),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }

    // When the migration step makes the login (twice, as every release does)
    for _ in 0..2 {
        login::ensure(&mut admin, &a.login, s, SchemaRights::Own)
            .await
            .unwrap();
    }

    // Then the login owns every object in it and can change them as migrations do
    let foreign: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relowner <> $2::regrole)
              + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = $1 AND p.proowner <> $2::regrole)",
    )
    .bind(s)
    .bind(&a.login.role)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(foreign, 0, "objects in {s} not owned by its login");
    let mut as_a = a.connect().await;
    sqlx::query("ALTER TABLE events ADD COLUMN seen boolean")
        .execute(&mut as_a)
        .await
        .unwrap();
    sqlx::query("INSERT INTO events (body) VALUES ('after')")
        .execute(&mut as_a)
        .await
        .unwrap();
    let touched: i32 = sqlx::query_scalar("SELECT touch()")
        .fetch_one(&mut as_a)
        .await
        .unwrap();
    assert_eq!(touched, 1);

    // And a schema beside its own (the projector's control schema) is handed over alike
    let beside = format!("{s}_control");
    for sql in [
        format!("CREATE SCHEMA \"{beside}\""),
        format!("CREATE TABLE \"{beside}\".pointer (id int)"),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }
    assert!(login::hand_over_schema(&mut admin, &beside, &a.login.role)
        .await
        .unwrap());
    sqlx::query(&format!("INSERT INTO \"{beside}\".pointer VALUES (1)"))
        .execute(&mut as_a)
        .await
        .unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{beside}\" CASCADE"))
        .execute(&mut as_a)
        .await
        .unwrap();

    // And the service's pool opens on its existing schema without CREATE on the database
    let pool = connect(&a.url, s, 2).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM recent")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    pool.close().await;
    drop_logins(&[&a]).await;
}

#[derive(Clone)]
struct Defaults;
impl DatabaseDefaults for Defaults {
    const SCHEMA: &'static str = "unused";
}

#[tokio::test]
async fn the_migration_step_makes_the_login_its_url_names_and_one_that_may_create_schemas() {
    // Given a service's settings naming its login, and the administrator's URL
    let ns = Namespace::new();
    let a = TestLogin::new(&ns, "p");
    let config = DatabaseConfig::<Defaults> {
        url: a.url.clone(),
        schema: a.schema.clone(),
        max_connections: 2,
        admin_url: Some(database_url()),
        defaults: Default::default(),
    };

    // When the step runs twice at once (two migration Jobs of a blue-green release)
    let (first, second) = tokio::join!(
        config.prepare_login(false, SchemaRights::OwnAndCreate),
        config.prepare_login(false, SchemaRights::OwnAndCreate)
    );
    assert!(first.unwrap().is_some() && second.unwrap().is_some());

    // Then the login connects with its password and may create a schema of its own
    let pool = config.connect().await.unwrap();
    let replay = format!("{}_replay", a.schema);
    sqlx::query(&format!("CREATE SCHEMA \"{replay}\""))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let mut admin = admin().await;
    sqlx::query(&format!("DROP SCHEMA \"{replay}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    drop_logins(&[&a]).await;
}

#[tokio::test]
async fn without_the_administrators_url_the_step_makes_no_login() {
    let ns = Namespace::new();
    let config = DatabaseConfig::<Defaults> {
        url: database_url(),
        schema: ns.schema(),
        max_connections: 1,
        admin_url: None,
        defaults: Default::default(),
    };
    assert!(config
        .prepare_login(false, SchemaRights::Own)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_reader_granted_another_services_table_reads_it_and_nothing_else() {
    // Given the command side's login with its event store and a second table, and the
    // projector's login
    let ns = Namespace::new();
    let (command, projector) = (TestLogin::new(&ns, "c"), TestLogin::new(&ns, "r"));
    let mut admin = admin().await;
    for l in [&command, &projector] {
        login::ensure(&mut admin, &l.login, &l.schema, SchemaRights::Own)
            .await
            .unwrap();
    }
    let mut as_command = command.connect().await;
    for sql in [
        "CREATE TABLE events (id bigint PRIMARY KEY)",
        "CREATE TABLE credentials (id bigint PRIMARY KEY)",
        "INSERT INTO events VALUES (1)",
    ] {
        sqlx::query(sql).execute(&mut as_command).await.unwrap();
    }

    // When the projector's migration step grants it the event store
    let granted = login::grant_select_when_present(
        &mut admin,
        &command.schema,
        "events",
        &projector.login.role,
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(granted);

    // Then the projector reads the events, and cannot change them or read the rest
    let mut as_projector = projector.connect().await;
    let c = &command.schema;
    let events: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{c}\".events"))
        .fetch_one(&mut as_projector)
        .await
        .unwrap();
    assert_eq!(events, 1);
    for sql in [
        format!("INSERT INTO \"{c}\".events VALUES (2)"),
        format!("DELETE FROM \"{c}\".events"),
        format!("SELECT count(*) FROM \"{c}\".credentials"),
    ] {
        assert!(
            is_permission_denied(sqlx::query(&sql).execute(&mut as_projector).await),
            "{sql}"
        );
    }

    // And a table that never appears is reported, not granted
    let missing = login::grant_select_when_present(
        &mut admin,
        &command.schema,
        "absent",
        &projector.login.role,
        std::time::Duration::from_millis(600),
    )
    .await
    .unwrap();
    assert!(!missing);
    drop(as_command);
    drop(as_projector);
    drop_logins(&[&command, &projector]).await;
}
