//! ferry with its state in a private PostgreSQL server, run as a user
//! would: `ferry check` reports the schema, `ferry once` delivers through
//! it, `ferry files` reads it; the password comes from an environment
//! secret and appears in no output, and a URL that holds one is refused.

mod common;

use common::postgres::{PG_PASSWORD, Postgres};
use common::{BIN, Fixture};
use std::process::{Command, Output};

const PASSWORD_VAR: &str = "FERRY_TEST_STATE_PASSWORD";

/// A server in a temp directory, removed after the server stops.
struct Server {
    pg: Postgres,
    _dir: tempfile::TempDir,
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path().join("pg"), false);
    Server { pg, _dir: dir }
}

/// The fixture's rule with `daemon.state` = `url` and the password secret.
fn configure(fx: &Fixture, url: &str) {
    let text = format!(
        "[daemon]\nstate = \"{url}\"\nstate_password = {{ env = \"{PASSWORD_VAR}\" }}\nspool_dir = \"{}\"\n\n{}",
        fx.path("spool").display(),
        fx.rule("r", "")
    );
    std::fs::write(&fx.config, text).unwrap();
}

/// `ferry ARGS -c CONFIG` with the password variable set to `password`.
fn ferry(fx: &Fixture, args: &[&str], password: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(&fx.config)
        .env("RUST_LOG", "debug")
        .env(PASSWORD_VAR, password)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn all_output(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn once_delivers_and_files_reads_through_postgres() {
    let s = server();
    s.pg.create_database("ferry_once");
    let fx = Fixture::new("");
    configure(&fx, &s.pg.url("ferry_once"));

    let out = ferry(&fx, &["check"], PG_PASSWORD);
    assert!(out.status.success(), "{}", all_output(&out));
    assert!(
        text(&out.stdout).contains("state database: postgres, no schema yet (latest 9"),
        "{}",
        all_output(&out)
    );

    fx.put("a.csv", b"first file\n");
    fx.put("sub/b.csv", &vec![7u8; 200_000]);
    fx.put("c.csv", b"");
    let out = ferry(&fx, &["once"], PG_PASSWORD);
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    assert!(
        !all_output(&out).contains(PG_PASSWORD),
        "the password leaked"
    );
    assert_eq!(
        std::fs::read(fx.outbox.join("a.csv")).unwrap(),
        b"first file\n"
    );
    assert_eq!(std::fs::read(fx.outbox.join("c.csv")).unwrap(), b"");
    assert!(!fx.outbox.join("sub/b.csv").exists(), "not recursive");

    let out = ferry(&fx, &["files", "--json"], PG_PASSWORD);
    assert!(out.status.success(), "{}", all_output(&out));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut done: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["path"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    done.sort();
    assert_eq!(done, [("a.csv", "done"), ("c.csv", "done")]);

    // A second pass finds nothing new: no second row, no second copy.
    let out = ferry(&fx, &["once"], PG_PASSWORD);
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    let names: Vec<_> = std::fs::read_dir(&fx.outbox).unwrap().collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        s.pg.psql_in("ferry_once", "SELECT count(*) FROM files"),
        "2"
    );
    // The history triggers wrote each step.
    let steps = s.pg.psql_in(
        "ferry_once",
        "SELECT string_agg(event, ' ' ORDER BY h.id) FROM history h JOIN files f ON f.id = h.file_id WHERE f.path = 'a.csv'",
    );
    assert_eq!(steps, "listed stable attempt downloaded done");

    let out = ferry(&fx, &["check"], PG_PASSWORD);
    assert!(
        text(&out.stdout).contains("state database: postgres, schema version 9 (latest 9"),
        "{}",
        all_output(&out)
    );
}

/// A wrong password and a server that is not there are each named by host
/// and port; the password given appears nowhere.
#[test]
fn connection_errors_name_the_server_never_the_password() {
    let s = server();
    s.pg.create_database("ferry_refused");
    let fx = Fixture::new("");
    configure(&fx, &s.pg.url("ferry_refused"));
    let wrong = "Wrong-state-pw-66120";
    for args in [&["check"][..], &["once"], &["files"]] {
        let out = ferry(&fx, args, wrong);
        let all = all_output(&out);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {all}");
        assert!(
            all.contains(&format!("127.0.0.1:{}", s.pg.port)),
            "{args:?}: {all}"
        );
        assert!(
            all.contains("password authentication failed"),
            "{args:?}: {all}"
        );
        assert!(!all.contains(wrong), "{args:?} leaked the password: {all}");
    }

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    configure(
        &fx,
        &format!("postgres://ferry@127.0.0.1:{closed}/ferry?sslmode=disable"),
    );
    let out = ferry(&fx, &["check"], PG_PASSWORD);
    let all = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains(&format!("cannot connect to 127.0.0.1:{closed}/ferry")),
        "{all}"
    );
    assert!(!all.contains(PG_PASSWORD), "{all}");
}

/// A URL that holds a password is refused at its position, without
/// echoing it; so is an sslmode PostgreSQL does not know, and a password
/// for a SQLite file.
#[test]
fn state_urls_are_checked_where_they_are_written() {
    let fx = Fixture::new("");
    let cases = [
        (
            "postgres://ferry:Secret-in-url-5512@db.example/ferry",
            "daemon.state: the URL holds a password (user:password@)",
        ),
        (
            "postgresql://ferry@db.example/ferry?password=Secret-in-url-5512",
            "daemon.state: the URL holds a password (password=)",
        ),
        (
            "postgres://ferry@db.example/ferry?sslmode=sometimes",
            "daemon.state: ",
        ),
    ];
    for (url, want) in cases {
        configure(&fx, url);
        let out = ferry(&fx, &["check"], PG_PASSWORD);
        let all = all_output(&out);
        assert_eq!(out.status.code(), Some(2), "{url}: {all}");
        let at = format!("{}:2:9: {want}", fx.config.display());
        assert!(all.contains(&at), "{url}: want {at:?} in {all}");
        assert!(!all.contains("Secret-in-url-5512"), "{url}: echoed: {all}");
    }

    let sqlite = format!(
        "[daemon]\nstate = \"{}\"\nstate_password = {{ env = \"{PASSWORD_VAR}\" }}\n\n{}",
        fx.path("state.db").display(),
        fx.rule("r", "")
    );
    std::fs::write(&fx.config, sqlite).unwrap();
    let out = ferry(&fx, &["check"], PG_PASSWORD);
    let all = all_output(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains(
            ":3:18: daemon.state_password: only a postgres:// state database takes a password"
        ),
        "{all}"
    );
}

/// `sslmode=verify-full` with `sslrootcert`: the server's certificate is
/// checked against the private CA, and one signed by another CA is refused.
#[test]
fn tls_to_the_database_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    std::fs::create_dir_all(&certs_dir).unwrap();
    let certs = common::ftp_servers::make_certs(&certs_dir);
    let pg = Postgres::start_tls(dir.path().join("pg"), &certs.cert, &certs.key);
    pg.create_database("ferry_tls");
    let fx = Fixture::new("");
    let url = |ca: &std::path::Path| {
        format!(
            "postgres://ferry@127.0.0.1:{}/ferry_tls?sslmode=verify-full&sslrootcert={}",
            pg.port,
            ca.display()
        )
    };

    configure(&fx, &url(&certs.ca));
    let out = ferry(&fx, &["once"], PG_PASSWORD);
    assert_eq!(out.status.code(), Some(0), "{}", all_output(&out));
    let out = ferry(&fx, &["check"], PG_PASSWORD);
    assert!(
        text(&out.stdout).contains("state database: postgres, schema version 9"),
        "{}",
        all_output(&out)
    );

    configure(&fx, &url(&certs.other_ca));
    let out = ferry(&fx, &["check"], PG_PASSWORD);
    let all = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains(&format!("cannot connect to 127.0.0.1:{}", pg.port)),
        "{all}"
    );
    assert!(all.to_lowercase().contains("certificate"), "{all}");
}
