//! Managed Redis: TLS through rustls, ACL users and passwords. A Redis of our own serves TLS on
//! one port (and plain text on another, for the test's own commands), with certificates this
//! test makes: a CA, the server's (for 127.0.0.1), a client's, and another CA nobody trusts.
//! Example-server processes share one exact budget over TLS (one Redis, Sentinel, a Cluster),
//! and each misconfiguration is a clear error in the log, then the failure policy, never the
//! password.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use support::{count, data, free_port, ExampleServer};

const USER: &str = "app";
const PASSWORD: &str = "s3cret-pw-7f2a";

/// The files of a CA, a server certificate signed by it, a client certificate signed by it,
/// and a second CA that signed nothing here.
struct Certificates {
    dir: PathBuf,
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Certificates {
    fn make(dir: &Path) -> Certificates {
        std::fs::create_dir_all(dir).unwrap();
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert, key)
        };
        let (ca_cert, ca_key) = ca("ratelimit test CA");
        let (other_ca, _) = ca("another CA");
        let signed = |names: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages = usages;
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = signed(
            vec!["127.0.0.1".into(), "localhost".into()],
            // A client's too: the nodes of a cluster present it to one another on their bus.
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client, client_key) = signed(vec![], vec![ExtendedKeyUsagePurpose::ClientAuth]);
        for (name, pem) in [
            ("ca.pem", ca_cert.pem()),
            ("other-ca.pem", other_ca.pem()),
            ("server.pem", server),
            ("server.key", server_key),
            ("client.pem", client),
            ("client.key", client_key),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        Certificates {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }
}

/// A `redis-server` of our own with TLS on `tls_port`, plain text on `port`, the ACL user
/// `app` and a password for the default user.
struct TlsRedis {
    child: Child,
    port: u16,
    tls_port: u16,
}

impl TlsRedis {
    fn start(certs: &Certificates, client_certificates: bool) -> TlsRedis {
        let (port, tls_port) = (free_port(), free_port());
        let password = format!(">{PASSWORD}");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--tls-port",
                &tls_port.to_string(),
            ])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", certs.dir.to_str().unwrap()])
            .args(["--tls-cert-file", &certs.path("server.pem")])
            .args(["--tls-key-file", &certs.path("server.key")])
            .args(["--tls-ca-cert-file", &certs.path("ca.pem")])
            .args([
                "--tls-auth-clients",
                if client_certificates { "yes" } else { "no" },
            ])
            .args(["--requirepass", PASSWORD])
            .args(["--user", USER, "on", &password, "~*", "&*", "+@all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        let redis = TlsRedis {
            child,
            port,
            tls_port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// `redis-cli` on the plain port, as the ACL user.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["--user", USER, "--pass", PASSWORD, "--no-auth-warning"])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Script calls Redis has served: decisions made on it.
    fn script_calls(&self) -> u64 {
        support::script_calls_in(&self.cli(&["INFO", "commandstats"]))
    }

    fn tls_url(&self, user_info: &str) -> String {
        format!("rediss://{user_info}@127.0.0.1:{}", self.tls_port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path in the temporary directory, for this process and `name`. Logs are removed once
/// read; certificate directories when dropped.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ratelimit-tls-{}-{name}", std::process::id()))
}

/// Waits until a request to `server` is decided on `redis`.
async fn until_on_redis(redis: &TlsRedis, server: &ExampleServer) {
    support::until_decided(server, || redis.script_calls()).await;
}

#[actix_web::test]
async fn two_processes_share_one_exact_budget_over_tls_with_a_user_and_password() {
    let certs = Certificates::make(&scratch("shared"));
    let redis = TlsRedis::start(&certs, false);
    let url = redis.tls_url(&format!("{USER}:{PASSWORD}"));
    let ca = certs.path("ca.pem");
    let env = [
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_REDIS_TLS_CA", ca.as_str()),
        ("RATELIMIT_REDIS_TIMEOUT_MS", "2000"),
        ("RATELIMIT_KEY_SECRET", "tls-fleet"),
    ];
    let (a, b) = (
        ExampleServer::start_with(&env),
        ExampleServer::start_with(&env),
    );
    until_on_redis(&redis, &a).await;
    until_on_redis(&redis, &b).await;
    // /data: 10 per 10 s per API key, across both processes.
    let statuses = data(&[&a, &b], "shared-over-tls", 40).await;
    assert_eq!(
        (count(&statuses, 200), count(&statuses, 429)),
        (10, 30),
        "exactly the limit passes across the fleet, over TLS"
    );
}

#[actix_web::test]
async fn the_default_users_password_alone_is_enough() {
    let certs = Certificates::make(&scratch("default-user"));
    let redis = TlsRedis::start(&certs, false);
    let url = redis.tls_url(&format!(":{PASSWORD}"));
    let ca = certs.path("ca.pem");
    let server = ExampleServer::start_with(&[
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_REDIS_TLS_CA", ca.as_str()),
        ("RATELIMIT_REDIS_TIMEOUT_MS", "2000"),
    ]);
    until_on_redis(&redis, &server).await;
    let statuses = data(&[&server], "default-user", 12).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (10, 2));
}

#[actix_web::test]
async fn mutual_tls_shares_the_budget_and_a_client_without_a_certificate_falls_back() {
    let certs = Certificates::make(&scratch("mutual"));
    let redis = TlsRedis::start(&certs, true);
    let url = redis.tls_url(&format!("{USER}:{PASSWORD}"));
    let (ca, cert, key) = (
        certs.path("ca.pem"),
        certs.path("client.pem"),
        certs.path("client.key"),
    );
    let env = [
        ("REDIS_URL", url.as_str()),
        ("RATELIMIT_REDIS_TLS_CA", ca.as_str()),
        ("RATELIMIT_REDIS_TLS_CERT", cert.as_str()),
        ("RATELIMIT_REDIS_TLS_KEY", key.as_str()),
        ("RATELIMIT_REDIS_TIMEOUT_MS", "2000"),
        ("RATELIMIT_KEY_SECRET", "mutual"),
    ];
    let (a, b) = (
        ExampleServer::start_with(&env),
        ExampleServer::start_with(&env),
    );
    until_on_redis(&redis, &a).await;
    until_on_redis(&redis, &b).await;
    let statuses = data(&[&a, &b], "mutual", 30).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (10, 20));

    // Without a client certificate Redis refuses the handshake: logged, and the fallback
    // limits this process in its own memory.
    let log = scratch("mutual-no-cert.log");
    let lone = ExampleServer::start_logged(&env[..2], &log);
    let statuses = data(&[&lone], "mutual-lone", 12).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (10, 2));
    let logged = wait_for_log(&log, "cannot connect to Redis");
    assert!(
        !logged.contains(PASSWORD),
        "the password stays out of the log: {logged}"
    );
}

/// Each misconfiguration: the process answers by its failure policy (the fallback: its own
/// memory), every request within the timeout, and says why in one error line without the
/// password.
#[actix_web::test]
async fn a_plain_connection_a_wrong_ca_and_a_wrong_password_are_clear_errors() {
    let certs = Certificates::make(&scratch("faults"));
    let redis = TlsRedis::start(&certs, false);
    let good = redis.tls_url(&format!("{USER}:{PASSWORD}"));
    let wrong_password = redis.tls_url(&format!("{USER}:not-the-{PASSWORD}"));
    let plain = format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}", redis.tls_port);
    let (ca, other_ca) = (certs.path("ca.pem"), certs.path("other-ca.pem"));
    let cases = [
        (
            "plain-to-tls",
            plain.as_str(),
            ca.as_str(),
            "cannot connect to Redis",
        ),
        ("wrong-ca", good.as_str(), other_ca.as_str(), "certificate"),
        (
            "wrong-password",
            wrong_password.as_str(),
            ca.as_str(),
            "authentication failed",
        ),
    ];
    let decisions_before = redis.script_calls();
    for (name, url, ca, expected) in cases {
        let log = scratch(&format!("{name}.log"));
        let server = ExampleServer::start_logged(
            &[
                ("REDIS_URL", url),
                ("RATELIMIT_REDIS_TLS_CA", ca),
                ("RATELIMIT_REDIS_TIMEOUT_MS", "300"),
            ],
            &log,
        );
        let started = Instant::now();
        let statuses = data(&[&server], name, 12).await;
        // The fallback decides in this process's memory: the limit still holds.
        assert_eq!(
            (count(&statuses, 200), count(&statuses, 429)),
            (10, 2),
            "{name}: the fallback limits"
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{name}: answered within the timeouts, took {:?}",
            started.elapsed()
        );
        let logged = wait_for_log(&log, expected);
        assert!(
            logged.contains("cannot connect to Redis"),
            "{name}: one clear line: {logged}"
        );
        assert!(
            !logged.contains(PASSWORD),
            "{name}: the password leaked: {logged}"
        );
    }
    assert_eq!(
        redis.script_calls(),
        decisions_before,
        "nothing was decided on Redis"
    );
}

/// The log at `path` once it holds `needle` (bounded wait).
fn wait_for_log(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            let _ = std::fs::remove_file(path);
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the log never said {needle:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `redis-cli` over TLS to `port`, trusting the test's CA, with `auth` (`-a <password>`),
/// stopped after 20 s (`--cluster create` waits for ever for nodes that cannot meet).
fn tls_cli(certs: &Certificates, port: u16, auth: &[&str], args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["20", "redis-cli"])
        .args(["--tls", "--cacert", &certs.path("ca.pem")])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--no-auth-warning",
        ])
        .args(auth)
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The TLS options every server of these tests takes: the test's certificates, no client
/// certificates asked for.
fn tls_args(certs: &Certificates) -> Vec<String> {
    [
        ("--tls-cert-file", "server.pem"),
        ("--tls-key-file", "server.key"),
        ("--tls-ca-cert-file", "ca.pem"),
    ]
    .into_iter()
    .flat_map(|(flag, file)| [flag.to_string(), certs.path(file)])
    .chain(["--tls-auth-clients".to_string(), "no".to_string()])
    .collect()
}

/// A process of ours, killed when dropped.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sentinel over TLS: the sentinel and the master serve TLS only, the sentinel with a password
/// of its own, the master with an ACL user named in the master's URL.
#[actix_web::test]
async fn sentinel_and_its_master_over_tls_share_one_exact_budget() {
    const SENTINEL_PASSWORD: &str = "sentinel-tls-pw-3d";
    let certs = Certificates::make(&scratch("sentinel"));
    let redis = TlsRedis::start(&certs, false);
    let sentinel_port = free_port();
    let config = certs.dir.join("sentinel.conf");
    let tls: Vec<String> = tls_args(&certs)
        .chunks(2)
        .map(|pair| format!("{} {}", pair[0].trim_start_matches("--"), pair[1]))
        .collect();
    std::fs::write(
        &config,
        format!(
            "port 0\ntls-port {sentinel_port}\nbind 127.0.0.1\ndir {dir}\n{tls}\n\
             tls-replication yes\nrequirepass {SENTINEL_PASSWORD}\n\
             sentinel monitor tlsmaster 127.0.0.1 {master} 1\n\
             sentinel auth-user tlsmaster {USER}\nsentinel auth-pass tlsmaster {PASSWORD}\n",
            dir = certs.dir.display(),
            tls = tls.join("\n"),
            master = redis.tls_port,
        ),
    )
    .unwrap();
    let _sentinel = Owned(
        Command::new("redis-sentinel")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel is installed (scripts/test.sh installs it)"),
    );
    let sentinel_auth = ["-a", SENTINEL_PASSWORD];
    until("the sentinel sees its master", || {
        let master = tls_cli(
            &certs,
            sentinel_port,
            &sentinel_auth,
            &["SENTINEL", "MASTER", "tlsmaster"],
        );
        let flags = master.lines().skip_while(|l| l.trim() != "flags").nth(1);
        flags.is_some_and(|f| f.trim() == "master")
    });
    let sentinels = format!("rediss://:{SENTINEL_PASSWORD}@127.0.0.1:{sentinel_port}");
    let master = format!("rediss://{USER}:{PASSWORD}@tlsmaster");
    let ca = certs.path("ca.pem");
    let env = [
        ("REDIS_SENTINEL_URLS", sentinels.as_str()),
        ("REDIS_SENTINEL_MASTER", master.as_str()),
        ("RATELIMIT_REDIS_TLS_CA", ca.as_str()),
        ("RATELIMIT_REDIS_TIMEOUT_MS", "2000"),
        ("RATELIMIT_KEY_SECRET", "sentinel-tls"),
    ];
    let (a, b) = (
        ExampleServer::start_with(&env),
        ExampleServer::start_with(&env),
    );
    until_on_redis(&redis, &a).await;
    until_on_redis(&redis, &b).await;
    let statuses = data(&[&a, &b], "sentinel-over-tls", 30).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (10, 20));
}

/// A Redis Cluster over TLS (`tls-cluster yes`: clients and the cluster bus), TLS only.
#[actix_web::test]
async fn a_cluster_over_tls_shares_one_exact_budget() {
    let certs = Certificates::make(&scratch("cluster"));
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let _nodes: Vec<Owned> = ports
        .iter()
        .map(|port| {
            let dir = certs.dir.join(format!("node-{port}"));
            std::fs::create_dir_all(&dir).unwrap();
            Owned(
                Command::new("redis-server")
                    .args(["--port", "0", "--tls-port", &port.to_string()])
                    .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .args(["--dir", dir.to_str().unwrap()])
                    .args(tls_args(&certs))
                    .args(["--tls-cluster", "yes", "--cluster-enabled", "yes"])
                    .args(["--cluster-node-timeout", "2000"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server is installed (scripts/test.sh installs it)"),
            )
        })
        .collect();
    for &port in &ports {
        until("a node starts", || {
            tls_cli(&certs, port, &[], &["PING"]).trim() == "PONG"
        });
    }
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    tls_cli(&certs, ports[0], &[], &create);
    until("the cluster is up", || {
        ports.iter().all(|&port| {
            tls_cli(&certs, port, &[], &["CLUSTER", "INFO"]).contains("cluster_state:ok")
        })
    });
    let script_calls = || -> u64 {
        ports
            .iter()
            .map(|&port| {
                support::script_calls_in(&tls_cli(&certs, port, &[], &["INFO", "commandstats"]))
            })
            .sum()
    };
    let nodes: Vec<String> = ports
        .iter()
        .map(|p| format!("rediss://127.0.0.1:{p}"))
        .collect();
    let nodes = nodes.join(",");
    let ca = certs.path("ca.pem");
    let env = [
        ("REDIS_CLUSTER_URLS", nodes.as_str()),
        ("RATELIMIT_REDIS_TLS_CA", ca.as_str()),
        ("RATELIMIT_REDIS_TIMEOUT_MS", "2000"),
        ("RATELIMIT_KEY_SECRET", "cluster-tls"),
    ];
    let (a, b) = (
        ExampleServer::start_with(&env),
        ExampleServer::start_with(&env),
    );
    for server in [&a, &b] {
        support::until_decided(server, script_calls).await;
    }
    let before = script_calls();
    let statuses = data(&[&a, &b], "cluster-over-tls", 30).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (10, 20));
    // At least every admission was decided on the cluster (denials may come from each
    // process's cache of denied keys).
    assert!(script_calls() >= before + 10, "decided on the cluster");
}
