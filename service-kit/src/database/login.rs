//! Each service's own PostgreSQL login. The migration step, which alone is given the
//! administrator's URL, makes the role its service's URL names, with that URL's password,
//! and hands it the service's schema and everything in it. The running service then
//! connects as that role: it owns its schema and can touch no other service's (no
//! `USAGE` on them), so a compromised pod reaches one service's data, not the database.

use sqlx::{Connection, PgConnection};

use super::is_identifier;

/// What a login may do beyond its own schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaRights {
    /// Its schema alone.
    Own,
    /// Its schema, and new schemas in the database (the projector's replay namespaces).
    OwnAndCreate,
}

/// The role and password a service's database URL carries.
#[derive(educe::Educe, Clone, PartialEq, Eq)]
#[educe(Debug)]
pub struct Login {
    pub role: String,
    #[educe(Debug(method(crate::secret::option)))]
    pub password: Option<String>,
}

impl Login {
    /// The user and password of a `postgres://user:password@host/db` URL (percent-decoded).
    pub fn from_url(url: &str) -> Result<Login, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("database URL: {e}"))?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "database URL: user or password is not UTF-8".to_owned())
        };
        let role = decode(parsed.username())?;
        if !is_identifier(&role) {
            return Err(format!(
                "database URL: the login `{role}` must be letters, digits and underscores"
            ));
        }
        let password = parsed.password().map(decode).transpose()?;
        Ok(Login {
            role,
            password: password.filter(|p| !p.is_empty()),
        })
    }
}

/// Makes `login` able to log in (creating the role if missing, setting its password),
/// gives it `schema` (created if missing) and every table, sequence, view and routine in
/// it, and grants or revokes `CREATE` on the database as `rights` says. Run with an
/// administrator's connection (`CREATEROLE`, not necessarily a superuser, as on Azure);
/// idempotent, and safe to run from several migration Jobs at once.
pub async fn ensure(
    admin: &mut PgConnection,
    login: &Login,
    schema: &str,
    rights: SchemaRights,
) -> Result<(), sqlx::Error> {
    assert!(
        is_identifier(schema) && is_identifier(&login.role),
        "names are checked before they reach SQL"
    );
    let role = &login.role;
    let mut tx = admin.begin().await?;
    // Roles are cluster-wide and the migration Jobs of a release run at once.
    lock_role(&mut tx, role).await?;
    // Checked first: CREATE ROLE needs CREATEROLE even when the role exists.
    if !exists(
        &mut tx,
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
        role,
    )
    .await?
    {
        sqlx::query(&format!("CREATE ROLE \"{role}\" LOGIN"))
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query(&format!("ALTER ROLE \"{role}\" LOGIN"))
            .execute(&mut *tx)
            .await?;
    }
    if let Some(password) = &login.password {
        set_password(&mut tx, role, password).await?;
    }
    // The administrator hands objects over only as a member of the receiving role (a
    // non-superuser administrator, as Azure's, must be one; a superuser already may).
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut *tx)
            .await?;
    if !superuser {
        sqlx::query(&format!("GRANT \"{role}\" TO CURRENT_USER"))
            .execute(&mut *tx)
            .await?;
    }
    if !hand_over_schema(&mut tx, schema, role).await? {
        sqlx::query(&format!(
            "CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{role}\""
        ))
        .execute(&mut *tx)
        .await?;
    }
    // CREATE on the database is one row's ACL for every login: the Jobs making other
    // logins at the same moment would collide on it, so it has a lock of its own, and is
    // written only when it must change.
    lock_database_acl(&mut tx).await?;
    let may_create: bool =
        sqlx::query_scalar("SELECT has_database_privilege($1, current_database(), 'CREATE')")
            .bind(role)
            .fetch_one(&mut *tx)
            .await?;
    let change = match (rights, may_create) {
        (SchemaRights::Own, true) => Some("REVOKE CREATE ON DATABASE %I FROM %I"),
        (SchemaRights::OwnAndCreate, false) => Some("GRANT CREATE ON DATABASE %I TO %I"),
        _ => None,
    };
    if let Some(change) = change {
        sqlx::query(&format!(
            "DO $$ BEGIN EXECUTE format('{change}', current_database(), '{role}'); END $$"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Lets `reader` read one table of another service's schema (the projector reads the
/// command side's event store), once both exist: the table's service may migrate in a
/// Job running at the same time, so this waits for it up to `wait`. Run with the
/// administrator's connection, which the table's own migration step made a member of
/// its owner. Returns whether the grant was made (false: the table never appeared).
pub async fn grant_select_when_present(
    admin: &mut PgConnection,
    schema: &str,
    table: &str,
    reader: &str,
    wait: std::time::Duration,
) -> Result<bool, sqlx::Error> {
    assert!(
        [schema, table, reader].iter().all(|n| is_identifier(n)),
        "names are checked before they reach SQL"
    );
    let deadline = std::time::Instant::now() + wait;
    loop {
        let name = format!("\"{schema}\".\"{table}\"");
        if exists(&mut *admin, "SELECT to_regclass($1) IS NOT NULL", &name).await? {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let mut tx = admin.begin().await?;
    lock_role(&mut tx, reader).await?;
    sqlx::query(&format!(
        "GRANT USAGE ON SCHEMA \"{schema}\" TO \"{reader}\""
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "GRANT SELECT ON \"{schema}\".\"{table}\" TO \"{reader}\""
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Whether `schema` exists (looked up, since CREATE SCHEMA IF NOT EXISTS needs CREATE on
/// the database even when it does).
pub(crate) async fn schema_exists(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<bool, sqlx::Error> {
    exists(
        conn,
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
        schema,
    )
    .await
}

/// `query`, a boolean of one text parameter, for `name`.
async fn exists(conn: &mut PgConnection, query: &str, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(query).bind(name).fetch_one(conn).await
}

/// Changes to one role (its attributes, or grants to it) from two sessions can collide
/// ("tuple concurrently updated"): one transaction-scoped lock per role serialises them,
/// wherever they are made (here, and the projector's grants to the query role).
pub async fn lock_role(tx: &mut PgConnection, role: &str) -> Result<(), sqlx::Error> {
    lock(tx, role).await
}

/// The database's access list (CREATE on it) is one row for every login.
async fn lock_database_acl(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    // Not an identifier, so no role's lock is this one.
    lock(tx, "database acl").await
}

async fn lock(tx: &mut PgConnection, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('phonebill-grant-' || $1))")
        .bind(key)
        .execute(tx)
        .await?;
    Ok(())
}

/// Sets `role`'s password. ALTER ROLE takes no bind parameters; the password reaches it
/// through a transaction-local setting, so it is never part of a statement's text (or
/// the server's log).
pub async fn set_password(
    tx: &mut PgConnection,
    role: &str,
    password: &str,
) -> Result<(), sqlx::Error> {
    assert!(
        is_identifier(role),
        "names are checked before they reach SQL"
    );
    sqlx::query("SELECT set_config('phonebill.login_password', $1, true)")
        .bind(password)
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', '{role}',
             current_setting('phonebill.login_password')); END $$"
    ))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Gives `schema`, if it exists, and everything in it to `role` (a login [`ensure`] made,
/// so that the administrator is a member of it); returns whether it existed. A service
/// with schemas beside its own (the projector's control schema and replays) hands each
/// over this way.
pub async fn hand_over_schema(
    admin: &mut PgConnection,
    schema: &str,
    role: &str,
) -> Result<bool, sqlx::Error> {
    assert!(
        is_identifier(schema) && is_identifier(role),
        "names are checked before they reach SQL"
    );
    if !schema_exists(&mut *admin, schema).await? {
        return Ok(false);
    }
    sqlx::query(&format!("ALTER SCHEMA \"{schema}\" OWNER TO \"{role}\""))
        .execute(&mut *admin)
        .await?;
    hand_over_objects(admin, schema, role).await?;
    Ok(true)
}

/// Schemas made before logins existed hold the administrator's tables: each goes to
/// `role`. Tables first (their own sequences follow them), then the sequences and
/// routines left.
async fn hand_over_objects(
    tx: &mut PgConnection,
    schema: &str,
    role: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        r#"DO $$
        DECLARE r record;
        BEGIN
          FOR r IN SELECT c.relname, c.relkind FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                     AND c.relowner <> '{role}'::regrole
          LOOP
            EXECUTE format('ALTER %s %I.%I OWNER TO %I',
              CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
              '{schema}', r.relname, '{role}');
          END LOOP;
          FOR r IN SELECT c.relname FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = '{schema}' AND c.relkind = 'S'
                     AND c.relowner <> '{role}'::regrole
          LOOP
            EXECUTE format('ALTER SEQUENCE %I.%I OWNER TO %I', '{schema}', r.relname, '{role}');
          END LOOP;
          FOR r IN SELECT p.oid::regprocedure AS routine FROM pg_proc p
                   JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = '{schema}' AND p.proowner <> '{role}'::regrole
          LOOP
            EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.routine, '{role}');
          END LOOP;
        END $$"#
    ))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_the_user_and_password_of_its_url() {
        let login = Login::from_url(
            "postgres://phonebill_command:p%40ss%3Aword@db.example:5432/phonebill?sslmode=require",
        )
        .unwrap();
        assert_eq!(login.role, "phonebill_command");
        assert_eq!(login.password.as_deref(), Some("p@ss:word"));
    }

    #[test]
    fn a_url_without_a_password_names_a_login_without_one() {
        let login = Login::from_url("postgres://phonebill_kos@127.0.0.1/phonebill").unwrap();
        assert_eq!(login.role, "phonebill_kos");
        assert_eq!(login.password, None);
    }

    #[test]
    fn a_login_name_that_could_inject_sql_is_refused() {
        let refused = Login::from_url("postgres://x%22%3B%20drop@h/db").unwrap_err();
        assert!(refused.contains("letters, digits"), "{refused}");
        assert!(Login::from_url("not a url").is_err());
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let login = Login::from_url("postgres://phonebill_kos:hunter2@h/db").unwrap();
        assert!(!format!("{login:?}").contains("hunter2"));
    }
}
