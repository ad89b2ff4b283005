//! `vaultmesh-command-center`: a thin CLI over the library. Exit codes: 0 success, 1 runtime
//! failure, 2 bad usage (one readable line on stderr).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use vaultmesh_command_center::admin;
use vaultmesh_command_center::config::{DEFAULT_LISTEN, ServeConfig};
use vaultmesh_command_center::demo::{self, DemoOptions};
use vaultmesh_command_center::server::{ServeError, Server};
use vaultmesh_process::service;
use vaultmesh_store::StoreLimits;
use vaultmesh_store::commands::CommandStatus;
use vaultmesh_store::logs::{
    self, LogsError,
    filter::{Filter, FilterArgs},
    render::Format,
    stats, view,
};

/// jemalloc rather than glibc's malloc: memory freed when connections and event streams close
/// goes back to the system (glibc kept it: `tests/connections.rs`, docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "vaultmesh-command-center",
    version = vaultmesh_process::version!(),
    about = "VaultMesh Command Center: ingests heartbeats from node agents and shows the fleet.",
    after_help = "Examples:\n  vaultmesh-command-center demo                         CC + a live agent for this host, on ./vaultmesh-demo\n  vaultmesh-command-center serve --log-dir /var/lib/vaultmesh/cc\n  VAULTMESH_LISTEN=127.0.0.1:9000 vaultmesh-command-center\n\nRUST_LOG sets the log filter (default info)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and dashboard (the default).
    Serve(Box<ServeArgs>),
    /// Run the Command Center with a real agent for this host in the same process.
    Demo(DemoArgs),
    /// Query the append-only logs (works with the server stopped).
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Issue or list commands on a running Command Center.
    #[command(subcommand)]
    #[command(name = "command")]
    Commands(CommandsCommand),
    /// Revoke a node's key or re-admit a revoked node, on a running Command Center.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Validate policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The verifiable Merkle ledger over the scan log (ROOT.txt, PROOFCHAIN.json).
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Check the notifications file, or send a test message through a route.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Copy the log between a log directory and a PostgreSQL database.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print the shell completion script (packages install it; or `source <(... completions bash)`).
    Completions {
        #[arg(value_enum)]
        shell: vaultmesh_process::cli::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Create the command-signing key (mode 0600) and print the public key agents pin.
    #[command(
        after_help = "Examples:\n  vaultmesh-command-center keygen                  writes /etc/vaultmesh/cc.key (run as root)\n  vaultmesh-command-center keygen --show-public    prints its public key and key id again"
    )]
    Keygen {
        /// Where to write the key (never overwritten); with --show-public, the key to read.
        #[arg(long, default_value = vaultmesh_command_center::config::DEFAULT_KEY_FILE, value_name = "FILE")]
        out: PathBuf,
        /// Print the public key and key id of the existing key at --out, changing nothing.
        #[arg(long)]
        show_public: bool,
    },
}

#[derive(Debug, Subcommand)]
enum NotifyCommand {
    /// Validate the notifications file and list its routes.
    Check {
        #[arg(long, env = "VAULTMESH_NOTIFY_CONFIG", value_name = "FILE")]
        notify_config: PathBuf,
        #[command(flatten)]
        policies: NotifyPolicyDir,
    },
    /// Send a test message through ROUTE's notifier now (not through the queue).
    #[command(
        after_help = "Example:\n  vaultmesh-command-center notify test oncall --notify-config /etc/vaultmesh/notify.toml"
    )]
    Test {
        /// The route's `name`.
        route: String,
        #[arg(long, env = "VAULTMESH_NOTIFY_CONFIG", value_name = "FILE")]
        notify_config: PathBuf,
        #[command(flatten)]
        policies: NotifyPolicyDir,
    },
}

#[derive(Debug, Args)]
struct NotifyPolicyDir {
    /// The policy directory `serve` uses: a route's `profiles` must each have a policy file
    /// there (or be a shipped profile).
    #[arg(long, env = "VAULTMESH_POLICY_DIR", value_name = "DIR")]
    policy_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct StoreUrlArg {
    /// The PostgreSQL database (postgres://USER[:PASSWORD]@HOST[:PORT]/DB).
    #[arg(
        long = "store",
        env = "VAULTMESH_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    url: String,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Write every log in the database to JSONL files in an empty directory (what the file
    /// store keeps: `ledger`, `logs` and `serve --log-dir` work on it).
    #[command(
        after_help = "Example:\n  vaultmesh-command-center store export --store postgres://vaultmesh@localhost/vaultmesh --to /srv/vaultmesh-export"
    )]
    Export {
        #[command(flatten)]
        db: StoreUrlArg,
        /// Directory to write (created if missing; must hold no log).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
    /// Read a log directory into an empty database, all or nothing (to move a Command Center
    /// from the file store to PostgreSQL).
    #[command(
        after_help = "Example:\n  vaultmesh-command-center store import --from /var/lib/vaultmesh/cc --store postgres://vaultmesh@localhost/vaultmesh"
    )]
    Import {
        /// The log directory to read (stop the Command Center that writes it first).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        #[command(flatten)]
        db: StoreUrlArg,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Extend the chain with a checkpoint over the whole log (append-only; refuses a log that
    /// no longer matches what was signed).
    Build {
        #[command(flatten)]
        dir: LogDirArg,
        /// The signing key (`keygen`), the same the Command Center signs commands with.
        #[arg(long, env = "VAULTMESH_CC_KEY_FILE", value_name = "FILE")]
        signing_key: PathBuf,
        /// Origin line and key name of new chains.
        #[arg(long, default_value = vaultmesh_store::ledger::DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Recompute everything from the log and check every signature, root, leaf and
    /// consistency proof; exit 1 naming the first bad line or proof.
    Verify {
        #[command(flatten)]
        dir: LogDirArg,
        /// Require this signer (base64 Ed25519 public key, as `keygen` prints it).
        #[arg(long, value_name = "BASE64")]
        public_key: Option<String>,
    },
    /// Print a scan's leaf, its inclusion proof and the checkpoint it is proven against (JSON).
    Prove {
        #[command(flatten)]
        dir: LogDirArg,
        #[arg(long, value_name = "UUID")]
        scan_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum LogsCommand {
    /// Print the newest matching records, oldest first.
    #[command(
        after_help = "Examples:\n  vaultmesh-command-center logs view --kind heartbeat --node vault-node-01 --since 2h\n  vaultmesh-command-center logs view --min-severity high --limit 20\n  vaultmesh-command-center logs view --kind scan --json | jq .record.findings"
    )]
    View {
        #[command(flatten)]
        filter: FilterArgs,
        /// How many records at most (the newest); 0 for all.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the stored JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: LogSourceArg,
    },
    /// Print the last matching records, then follow new ones (across rotation) until Ctrl-C.
    Tail {
        #[command(flatten)]
        filter: FilterArgs,
        /// How many past records to print first.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: LogSourceArg,
    },
    /// Per node: records by kind, first and last seen, worst severity.
    Stats {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: LogSourceArg,
    },
}

#[derive(Debug, Subcommand)]
enum CommandsCommand {
    /// Ask the Command Center to sign and queue a command (policy-checked); with --wait, follow
    /// it to its receipt and print the outcome (exit 0 if ok, 1 otherwise).
    #[command(
        after_help = "Examples:\n  vaultmesh-command-center command issue --node vault-node-01 --action agent.ping --wait\n  vaultmesh-command-center command issue --node 550e8400-e29b-41d4-a716-446655440000 --action service.restart --arg unit=cloudflared.service --wait 2m"
    )]
    Issue {
        /// The node: its id, or its hostname as `GET /api/nodes` shows it.
        #[arg(long, value_name = "NODE")]
        node: String,
        /// The action, e.g. agent.ping (`vaultmesh-node-agent actions` lists them).
        #[arg(long)]
        action: String,
        /// An argument as KEY=VALUE; repeat for several.
        #[arg(long = "arg", value_name = "KEY=VALUE")]
        args: Vec<String>,
        /// Seconds the command stays valid.
        #[arg(long, default_value_t = 300)]
        ttl: u64,
        /// Wait for the receipt and print it: at most DURATION (e.g. 30s, 2m), or until the
        /// command expires (--ttl) when no duration is given.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        wait: Option<Option<Duration>>,
        /// Print JSON: the signed command, or with --wait the command with its receipt.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List recent commands, newest first, with their status and receipt.
    List {
        /// Only this node's: its id or hostname.
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Only commands with this status.
        #[arg(long, value_parser = parse_status)]
        status: Option<CommandStatus>,
        /// How many at most (1-1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Revoke the node's key: its requests are refused at once, and neither the node nor its
    /// key may enroll again until it is re-admitted.
    #[command(
        after_help = "Example:\n  vaultmesh-command-center node revoke vault-node-01 --reason \"disk sent for repair\""
    )]
    Revoke {
        /// The node: its id, or its hostname.
        node: String,
        /// Why, for the event log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Let a revoked node enroll again: with a new key (`vaultmesh-node-agent rekey` on the
    /// node), or with its old one if --allow-old-key.
    #[command(after_help = "Example:\n  vaultmesh-command-center node readmit vault-node-01")]
    Readmit {
        /// The node: its id, or its hostname.
        node: String,
        /// The revocation was a mistake: the node may come back with the key it had.
        #[arg(long)]
        allow_old_key: bool,
        /// Why, for the event log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the admin API is and the credentials it takes (never printed; `--help` hides their
/// environment values).
#[derive(Debug, Args)]
struct AdminArgs {
    /// The Command Center's admin URL: http://127.0.0.1:8088 on its host, or its public URL
    /// (https://cc.example.com) through Cloudflare Access.
    #[arg(
        long,
        env = "VAULTMESH_ADMIN_URL",
        value_name = "URL",
        default_value = admin::client::DEFAULT_URL
    )]
    url: String,
    /// The admin bearer token (the Command Center's --admin-token). Prefer the environment:
    /// arguments show in `ps`.
    #[arg(
        long,
        env = "VAULTMESH_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// A Cloudflare Access service token's Client ID (sent as CF-Access-Client-Id).
    #[arg(
        long,
        env = "VAULTMESH_ACCESS_CLIENT_ID",
        value_name = "ID",
        requires = "access_client_secret",
        hide_env_values = true
    )]
    access_client_id: Option<String>,
    /// The service token's Client Secret (sent as CF-Access-Client-Secret).
    #[arg(
        long,
        env = "VAULTMESH_ACCESS_CLIENT_SECRET",
        value_name = "SECRET",
        requires = "access_client_id",
        hide_env_values = true
    )]
    access_client_secret: Option<String>,
}

impl AdminArgs {
    fn client(&self) -> Result<admin::AdminClient, admin::AdminError> {
        let access = match (&self.access_client_id, &self.access_client_secret) {
            (Some(client_id), Some(client_secret)) => Some(admin::ServiceToken {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
            }),
            _ => None,
        };
        let credentials = admin::Credentials {
            token: self.token.clone(),
            access,
        };
        admin::AdminClient::new(&self.url, &credentials)
    }
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check every *.toml in DIR; exit 2 naming file, key and reason on the first problem.
    Check {
        /// The policy directory.
        #[arg(default_value = "policies", env = "VAULTMESH_POLICY_DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct LogDirArg {
    /// The Command Center's log directory.
    #[arg(
        long,
        env = "VAULTMESH_LOG_DIR",
        value_name = "DIR",
        default_value = "vaultmesh-logs"
    )]
    log_dir: PathBuf,
}

#[derive(Debug, Args)]
struct LogSourceArg {
    #[command(flatten)]
    files: LogDirArg,
    /// Read the logs from this PostgreSQL database instead (a consistent snapshot).
    #[arg(
        long = "store",
        env = "VAULTMESH_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    store_url: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on; keep it on loopback behind cloudflared.
    #[arg(long, env = "VAULTMESH_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory for the append-only logs (created if missing; replayed at start).
    #[arg(
        long,
        env = "VAULTMESH_LOG_DIR",
        value_name = "DIR",
        default_value = "vaultmesh-logs"
    )]
    log_dir: PathBuf,
    /// Directory of per-profile policy files.
    #[arg(long, env = "VAULTMESH_POLICY_DIR", value_name = "DIR")]
    policy_dir: Option<PathBuf>,
    /// Keep the log in PostgreSQL (postgres://USER[:PASSWORD]@HOST[:PORT]/DB), shared by every
    /// instance given the same URL; --log-dir then holds only this instance's ledger files.
    /// Without it, the log is the JSONL files in --log-dir.
    #[arg(
        long = "store",
        env = "VAULTMESH_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    store_url: Option<String>,
    /// Notifications: notifiers and routes (TOML; see docs/NOTIFICATIONS.md). The queue is kept
    /// in --log-dir.
    #[arg(long, env = "VAULTMESH_NOTIFY_CONFIG", value_name = "FILE")]
    notify_config: Option<PathBuf>,
    /// Heartbeat history points kept per node.
    #[arg(long, default_value_t = StoreLimits::default().history_len)]
    history_len: usize,
    /// Most nodes tracked; heartbeats from further new nodes get 503.
    #[arg(long, default_value_t = StoreLimits::default().max_nodes)]
    max_nodes: usize,
    /// How often every node's attention is re-evaluated (staleness, silence expiry). Stale and
    /// critical thresholds are per profile, in the policy files.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    attention_tick: Duration,
    /// After a restart, judge staleness as of the last contact before it for this long, so a
    /// restart neither raises a storm nor hides nodes that were already silent.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    restart_grace: Duration,
    /// How often the orchestrator looks for nodes due a scheduled scan.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    scan_tick: Duration,
    /// How often the ledger signs a checkpoint over new scan reports (when there are any).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ledger_interval: Duration,
    /// Origin line (and key name) of the ledger's checkpoints.
    #[arg(long, default_value = vaultmesh_store::ledger::DEFAULT_ORIGIN)]
    ledger_origin: String,
    /// Cloudflare Access team domain (myteam.cloudflareaccess.com): admin routes then need a
    /// valid Cf-Access-Jwt-Assertion.
    #[arg(long, env = "VAULTMESH_ACCESS_TEAM_DOMAIN", requires = "access_aud")]
    access_team_domain: Option<String>,
    /// Access application AUD tag(s); repeat, or separate with commas.
    #[arg(long, env = "VAULTMESH_ACCESS_AUD", value_delimiter = ',')]
    access_aud: Vec<String>,
    /// Where to fetch the Access certs (default https://<team>/cdn-cgi/access/certs).
    #[arg(long, env = "VAULTMESH_ACCESS_JWKS_URL", value_name = "URL")]
    access_jwks_url: Option<String>,
    /// Read the Access certs from a file instead (air-gapped installs).
    #[arg(long, env = "VAULTMESH_ACCESS_CERTS_FILE", value_name = "FILE")]
    access_certs_file: Option<PathBuf>,
    /// Admin bearer token (Authorization: Bearer ...) when Access is not used.
    #[arg(long, env = "VAULTMESH_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Agent requests a second each node may make (beyond: 429 with Retry-After).
    #[arg(long, default_value_t = 5.0)]
    agent_rate: f64,
    /// Agent requests a node may make at once before the rate applies.
    #[arg(long, default_value_t = 30)]
    agent_burst: u32,
    /// Bytes of heartbeats each node may send an hour (beyond: 429 and an attention reason).
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    heartbeat_budget: u64,
    /// Bytes of scan reports each node may send an hour (a report is at most 4.25 MiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    scan_budget: u64,
    /// Bytes of command receipts each node may send an hour.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    receipt_budget: u64,
    /// Bytes of heartbeats the whole fleet may send an hour (node ids are cheap with a
    /// multi-use enrollment token; beyond: 429 for every node).
    #[arg(long, default_value = "8GiB", value_parser = parse_size)]
    fleet_heartbeat_budget: u64,
    /// Bytes of scan reports the whole fleet may send an hour.
    #[arg(long, default_value = "8GiB", value_parser = parse_size)]
    fleet_scan_budget: u64,
    /// Bytes of command receipts the whole fleet may send an hour.
    #[arg(long, default_value = "2GiB", value_parser = parse_size)]
    fleet_receipt_budget: u64,
    /// Enrollment attempts a second from one source address (Cf-Connecting-Ip behind the
    /// tunnel); beyond: 429 with Retry-After.
    #[arg(long, default_value_t = vaultmesh_command_center::agent_auth::ENROLL_RATE_PER_S)]
    enroll_rate: f64,
    /// Enrollment attempts one source may make at once before the rate applies.
    #[arg(long, default_value_t = vaultmesh_command_center::agent_auth::ENROLL_BURST)]
    enroll_burst: u32,
    /// Open /events streams each signed-in admin (Access identity or admin token) may hold
    /// (beyond: 429).
    #[arg(long, default_value_t = vaultmesh_command_center::sse::DEFAULT_PER_IDENTITY)]
    sse_per_identity: usize,
    /// Open /events streams each client address may hold when it is not signed in (a
    /// loopback-only Command Center; beyond: 429).
    #[arg(long, default_value_t = vaultmesh_command_center::sse::DEFAULT_PER_ADDRESS)]
    sse_per_address: usize,
    /// Open /events streams in all (beyond: 503); below --max-connections.
    #[arg(long, default_value_t = vaultmesh_command_center::sse::DEFAULT_TOTAL)]
    sse_total: usize,
    /// Client connections served at once. Beyond, the connection idle the longest is closed to
    /// make room, or, with every one busy, the new one gets 503. The open-file limit must hold
    /// this plus 128 (LimitNOFILE=; the soft limit is raised as far as the hard one allows).
    #[arg(long, default_value_t = vaultmesh_command_center::listener::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Close a connection that has not sent a whole request head within this of connecting, or
    /// of the head's first byte.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// Close a keep-alive connection that has sent nothing for this long since its previous
    /// response (keep it above cloudflared's keepAliveTimeout, 90 s by default).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Close a connection whose client has read nothing of a response or event stream for this
    /// long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    write_timeout: Duration,
    /// Rotate the heartbeat log at this size (also daily): e.g. 256MiB, 1GiB.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    heartbeat_rotate_size: u64,
    /// Delete rotated heartbeat segments older than this (scans, commands and events are kept forever).
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    heartbeat_retention: Duration,
    /// Interval of SSE keepalive comments on /events.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    sse_keepalive: Duration,
    /// Events an SSE client may fall behind before it gets `resync`.
    #[arg(long, default_value_t = 1024)]
    sse_buffer: usize,
    /// Enrollment token agents present once to bind their key: TOKEN[,single-use][,expires=RFC3339].
    /// Repeat for several; in the environment, separate them with spaces.
    #[arg(
        long,
        env = "VAULTMESH_ENROLL_TOKEN",
        value_delimiter = ' ',
        hide_env_values = true
    )]
    enroll_token: Vec<String>,
    /// Command-signing key written by `keygen`; without it no command can be issued. Unset, the
    /// systemd credential `cc.key` ($CREDENTIALS_DIRECTORY/cc.key, LoadCredential=) is used if
    /// present.
    #[arg(long, env = "VAULTMESH_CC_KEY_FILE", value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// Free space on the log volume below which the Command Center raises its own attention
    /// reason (cc.disk_free), before writes start failing: a share (5%) or a size (2GiB).
    #[arg(long, default_value = "5%", value_parser = parse_min_free)]
    min_free: vaultmesh_store::health::MinFree,
    /// How often the log volume's free space is measured.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    disk_check: Duration,
    /// Answer a request not done within this with a JSON error (503; 408 if its body is still
    /// arriving). The agent's long-poll gets its wait (at most 60s) on top.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Answer a request whose body has not arrived whole within this of its head with 408, and
    /// close the connection (a slow sender holds it no longer).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    body_timeout: Duration,
    /// Bytes all request bodies being received may hold at once; a body beyond gets 503 with
    /// Retry-After. At least the largest body accepted (a scan report, 4.25 MiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    body_memory: u64,
    /// A host name admin requests may name besides localhost, 127.0.0.1 and [::1] with the
    /// listen port (others get 421, against DNS rebinding): the public hostname behind
    /// cloudflared (cc.example.com, any port), or NAME:PORT. Repeat, or separate with commas.
    #[arg(
        long,
        env = "VAULTMESH_ALLOWED_HOST",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    allowed_host: Vec<vaultmesh_command_center::guard::HostName>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Where the demo keeps its logs and the agent's state.
    #[arg(long, default_value = "vaultmesh-demo", value_name = "DIR")]
    data_dir: PathBuf,
    /// The agent's heartbeat interval.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    interval: Duration,
}

/// `1048576`, `512KiB`, `256MiB`, `1GiB` (also KB/MB/GB, meaning the same powers of two).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write e.g. 256MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}; use KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `5%` (of the volume) or a size (`2GiB`).
fn parse_min_free(s: &str) -> Result<vaultmesh_store::health::MinFree, String> {
    use vaultmesh_store::health::MinFree;
    match s.trim().strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(MinFree::Percent(p)),
            _ => Err(format!("{s:?} is not a share of the volume; write e.g. 5%")),
        },
        None => parse_size(s).map(MinFree::Bytes),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = vaultmesh_process::duration::parse(s)?;
    if d.is_zero() {
        Err("must be greater than zero".into())
    } else {
        Ok(d)
    }
}

fn main() -> ExitCode {
    let cli: Cli = vaultmesh_process::cli::parse_or_exit();
    vaultmesh_process::service::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Demo(args)) => run_demo(args).await,
            Some(Command::Serve(args)) => serve(*args).await,
            Some(Command::Logs(cmd)) => logs_from_store(cmd).await,
            Some(Command::Store(cmd)) => store(cmd).await,
            Some(Command::Notify(cmd)) => notify(cmd).await,
            Some(Command::Keygen { out, show_public }) => keygen(&out, show_public),
            Some(Command::Completions { shell }) => {
                vaultmesh_process::cli::completions::<Cli>(shell, &mut std::io::stdout())
                    .map_err(|e| (1, format!("cannot write to standard output: {e}")))
            }
            Some(Command::Man) => vaultmesh_process::cli::man::<Cli>(&mut std::io::stdout())
                .map_err(|e| (1, format!("cannot write to standard output: {e}"))),
            Some(Command::Ledger(cmd)) => ledger(cmd),
            Some(Command::Policy(PolicyCommand::Check { dir })) => policy_check(&dir),
            Some(Command::Commands(cmd)) => admin_verb(AdminVerb::Commands(cmd)).await,
            Some(Command::Node(cmd)) => admin_verb(AdminVerb::Node(cmd)).await,
            None => serve(cli.serve).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            ExitCode::from(code)
        }
    }
}

/// An exit code and the one line that says why (empty: already said on stdout).
type Failure = (u8, String);

/// SIGHUP reloads the policy directory; an invalid set is refused and the old one kept.
fn reload_policies_on_sighup(policies: std::sync::Arc<vaultmesh_store::policy::LivePolicies>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match policies.reload() {
                Ok(n) => tracing::info!(files = n, "Policies reloaded."),
                Err(e) => {
                    tracing::error!(error = %e, "Policy reload refused; the previous policies stay in force.")
                }
            }
        }
    });
}

/// `policy check [DIR]`: validates every policy file.
fn policy_check(dir: &std::path::Path) -> Result<(), Failure> {
    let p = vaultmesh_store::policy::Policies::load(Some(dir)).map_err(|e| (2, e))?;
    if p.is_empty() {
        return Err((2, format!("{}: no *.toml policy files", dir.display())));
    }
    println!(
        "ok: {} — {} polic{}: {}",
        dir.display(),
        p.len(),
        if p.len() == 1 { "y" } else { "ies" },
        p.profiles().join(", ")
    );
    Ok(())
}

fn ledger(cmd: LedgerCommand) -> Result<(), Failure> {
    use vaultmesh_store::ledger::{self, LedgerError};
    let code = |e: &LedgerError| match e {
        LedgerError::Tampered(_) | LedgerError::Chain(_) => 1,
        LedgerError::NotFound(_) | LedgerError::Io(..) | LedgerError::Busy(_) => 2,
    };
    match cmd {
        LedgerCommand::Build {
            dir,
            signing_key,
            origin,
        } => {
            let text = std::fs::read_to_string(&signing_key)
                .map_err(|e| (2, format!("--signing-key {}: {e}", signing_key.display())))?;
            let key = vaultmesh_proto::auth::NodeKey::from_base64(&text).map_err(|_| {
                (
                    2,
                    format!(
                        "--signing-key {}: not a key written by `keygen`",
                        signing_key.display()
                    ),
                )
            })?;
            logs::require_dir(&dir.log_dir).map_err(|e| (2, e.to_string()))?;
            if origin.trim().is_empty() || origin.contains(['\n', ' ', '+']) {
                return Err((2, "--origin must be one line without spaces or '+'".into()));
            }
            match ledger::build_offline(&dir.log_dir, &origin, &key) {
                Ok(Some(size)) => println!("ok: signed a checkpoint of {size} lines"),
                Ok(None) => println!("ok: nothing new to sign"),
                Err(e) => return Err((code(&e), e.to_string())),
            }
            Ok(())
        }
        LedgerCommand::Verify { dir, public_key } => {
            let pinned = public_key
                .map(|k| {
                    vaultmesh_proto::auth::parse_public_key(&k)
                        .map_err(|e| (2, format!("--public-key: {e}")))
                })
                .transpose()?;
            match ledger::verify_offline(&dir.log_dir, pinned.as_ref()) {
                Ok((lines, checkpoints)) => {
                    println!(
                        "ok: {lines} lines, {checkpoints} checkpoints, every signature, root, leaf and consistency proof verified"
                    );
                    Ok(())
                }
                Err(e) => Err((code(&e), e.to_string())),
            }
        }
        LedgerCommand::Prove { dir, scan_id } => {
            let id = uuid::Uuid::parse_str(&scan_id)
                .map_err(|e| (2, format!("--scan-id {scan_id:?}: {e}")))?;
            let proof =
                ledger::prove_offline(&dir.log_dir, id).map_err(|e| (code(&e), e.to_string()))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&proof).map_err(|e| (1, e.to_string()))?
            );
            Ok(())
        }
    }
}

/// `command issue|list` and `node revoke|readmit`: the admin API's verbs.
async fn admin_verb(verb: AdminVerb) -> Result<(), Failure> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let failed = |e: admin::AdminError| (e.exit_code(), e.to_string());
    let code = match verb {
        AdminVerb::Commands(CommandsCommand::Issue {
            node,
            action,
            args,
            ttl,
            wait,
            json,
            admin: a,
        }) => {
            let o = admin::Issue {
                node,
                action,
                args,
                ttl_s: ttl,
                wait,
                json,
            };
            admin::issue(&a.client().map_err(failed)?, o, &mut out).await
        }
        AdminVerb::Commands(CommandsCommand::List {
            node,
            status,
            limit,
            json,
            admin: a,
        }) => {
            let o = admin::List {
                node,
                status,
                limit: usize::from(limit),
                json,
            };
            admin::list(&a.client().map_err(failed)?, o, &mut out).await
        }
        AdminVerb::Node(NodeCommand::Revoke {
            node,
            reason,
            admin: a,
        }) => {
            let client = a.client().map_err(failed)?;
            admin::lifecycle(&client, &node, admin::Lifecycle::Revoke, reason, &mut out).await
        }
        AdminVerb::Node(NodeCommand::Readmit {
            node,
            allow_old_key,
            reason,
            admin: a,
        }) => {
            let client = a.client().map_err(failed)?;
            let what = admin::Lifecycle::Readmit { allow_old_key };
            admin::lifecycle(&client, &node, what, reason, &mut out).await
        }
    }
    .map_err(failed)?;
    match code {
        0 => Ok(()),
        // The outcome is printed already: exit 1 with nothing more to say.
        code => Err((code, String::new())),
    }
}

/// The verbs that call the admin API.
#[derive(Debug)]
enum AdminVerb {
    Commands(CommandsCommand),
    Node(NodeCommand),
}

/// `--status`: one of the statuses `GET /api/commands` knows.
fn parse_status(s: &str) -> Result<CommandStatus, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| "one of issued, delivered, ok, failed, rejected, timeout".to_string())
}

/// `keygen [--out FILE] [--show-public]`.
fn keygen(out: &std::path::Path, show_public: bool) -> Result<(), Failure> {
    use vaultmesh_command_center::commands::{KeyFileError, read_signing_key};
    if show_public {
        let key = read_signing_key(out).map_err(|e| {
            let hint = match &e {
                KeyFileError::Unreadable(io) if io.kind() == std::io::ErrorKind::NotFound => {
                    " (create it with `vaultmesh-command-center keygen --out FILE`)"
                }
                _ => "",
            };
            (2, format!("--out {}: {e}{hint}", out.display()))
        })?;
        print_public(&key.public_base64());
        return Ok(());
    }
    let key = vaultmesh_command_center::commands::create_signing_key(out).map_err(|e| {
        match e.kind() {
            std::io::ErrorKind::AlreadyExists => (
                2,
                format!(
                    "{}: already exists (keygen never overwrites a key)",
                    out.display()
                ),
            ),
            _ => (1, format!("{}: {e}", out.display())),
        }
    })?;
    println!("wrote {} (mode 0600)", out.display());
    print_public(&key.public_base64());
    Ok(())
}

/// What agents need of the key: the public key (`VAULTMESH_CC_PUBKEY`) and its id.
fn print_public(public: &str) {
    println!("public key: {public}");
    println!("key id: {}", vaultmesh_proto::command::key_id(public));
    println!("agents pin it with VAULTMESH_CC_PUBKEY={public}");
}

/// `notify check|test`.
async fn notify(cmd: NotifyCommand) -> Result<(), Failure> {
    use vaultmesh_engines::notify;
    let (path, route, policy_dir) = match &cmd {
        NotifyCommand::Check {
            notify_config,
            policies,
        } => (notify_config, None, &policies.policy_dir),
        NotifyCommand::Test {
            route,
            notify_config,
            policies,
        } => (notify_config, Some(route.as_str()), &policies.policy_dir),
    };
    let policies =
        vaultmesh_store::policy::Policies::load(policy_dir.as_deref()).map_err(|e| (2, e))?;
    let notify::Loaded { config, notifiers } =
        notify::load(path, &policies.known_profiles()).map_err(|e| (2, e))?;
    let Some(route) = route else {
        println!(
            "ok: {} — {} notifier(s), {} route(s): {}",
            path.display(),
            notifiers.len(),
            config.routes.len(),
            config
                .routes
                .iter()
                .map(|r| format!("{} → {}", r.name, r.notifier))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    };
    let r = config.route(route).ok_or_else(|| {
        let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
        (
            2,
            format!(
                "{}: no route {route:?}; routes: {}",
                path.display(),
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            ),
        )
    })?;
    let notifier = notifiers
        .get(&r.notifier)
        .ok_or_else(|| (2, format!("route {route}: no notifier {:?}", r.notifier)))?;
    let message = notify::test_message(route, &config.console_url);
    notifier.send(&message).await.map_err(|e| {
        (
            1,
            format!(
                "route {route}: {} notifier {:?} failed: {e}",
                notifier.kind(),
                r.notifier
            ),
        )
    })?;
    println!(
        "sent a test message through route {route} ({} notifier {:?})",
        notifier.kind(),
        r.notifier
    );
    Ok(())
}

/// Exit 2 unless `url` names a PostgreSQL database.
fn require_postgres(url: &str) -> Result<(), Failure> {
    use vaultmesh_store::postgres;
    if postgres::is_postgres_url(url) {
        return Ok(());
    }
    Err((
        2,
        format!(
            "--store {}: not a PostgreSQL URL; write postgres://USER@HOST/DB",
            postgres::redact(url)
        ),
    ))
}

/// `store export|import`.
async fn store(cmd: StoreCommand) -> Result<(), Failure> {
    use vaultmesh_store::postgres::{PgError, transfer};
    let code = |e: &PgError| match e {
        PgError::Transfer(_) | PgError::NewerSchema { .. } => 2,
        _ => 1,
    };
    match cmd {
        StoreCommand::Export { db, to } => {
            require_postgres(&db.url)?;
            let counts = transfer::export(&db.url, &to)
                .await
                .map_err(|e| (code(&e), e.to_string()))?;
            println!("exported to {}: {counts}", to.display());
        }
        StoreCommand::Import { from, db } => {
            require_postgres(&db.url)?;
            let (counts, skipped) = transfer::import(&from, &db.url)
                .await
                .map_err(|e| (code(&e), e.to_string()))?;
            println!("imported from {}: {counts}", from.display());
            if let Some(first) = skipped.first() {
                eprintln!(
                    "warning: skipped {} bad line(s); first: {}:{}: {}",
                    skipped.len(),
                    first.file.display(),
                    first.line,
                    first.reason
                );
            }
        }
    }
    Ok(())
}

/// `logs ... --store URL`: the same tools over a snapshot of the database, exported to a
/// private temporary directory that is removed afterwards.
async fn logs_from_store(mut cmd: LogsCommand) -> Result<(), Failure> {
    use vaultmesh_store::postgres::transfer;
    let tail = matches!(cmd, LogsCommand::Tail { .. });
    let dir = match &mut cmd {
        LogsCommand::View { dir, .. }
        | LogsCommand::Tail { dir, .. }
        | LogsCommand::Stats { dir, .. } => dir,
    };
    let Some(url) = dir.store_url.clone() else {
        return logs(cmd);
    };
    require_postgres(&url)?;
    if tail {
        return Err((
            2,
            "--store: `logs tail` follows log files; with PostgreSQL use `logs view --store ...` or the live /events stream".into(),
        ));
    }
    let snapshot = std::env::temp_dir().join(format!("vaultmesh-logs-{}", uuid::Uuid::new_v4()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&snapshot)
            .map_err(|e| (1, format!("cannot create {}: {e}", snapshot.display())))?;
    }
    let exported = transfer::export(&url, &snapshot).await;
    dir.files.log_dir.clone_from(&snapshot);
    let result = match exported {
        Ok(_) => logs(cmd),
        Err(e) => Err((1, e.to_string())),
    };
    let _ = std::fs::remove_dir_all(&snapshot);
    result
}

fn logs(cmd: LogsCommand) -> Result<(), Failure> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let format = |json: bool| if json { Format::Json } else { Format::Table };
    let result = match cmd {
        LogsCommand::View {
            filter,
            limit,
            json,
            dir,
        } => logs::require_dir(&dir.files.log_dir).and_then(|()| {
            let f = Filter::resolve(&filter, &dir.files.log_dir, chrono::Utc::now())?;
            let lines = view::select(&dir.files.log_dir, &f, limit)?;
            view::print(&mut out, format(json), &lines).map_err(LogsError::io(&dir.files.log_dir))
        }),
        LogsCommand::Tail {
            filter,
            lines,
            json,
            dir,
        } => logs::require_dir(&dir.files.log_dir).and_then(|()| {
            let f = Filter::resolve(&filter, &dir.files.log_dir, chrono::Utc::now())?;
            view::tail(
                &dir.files.log_dir,
                &f,
                lines,
                format(json),
                &mut out,
                Duration::from_millis(200),
                || false,
            )
        }),
        LogsCommand::Stats { json, dir } => logs::require_dir(&dir.files.log_dir).and_then(|()| {
            let s = stats::collect(&dir.files.log_dir)?;
            stats::print(&mut out, &s, json).map_err(LogsError::io(&dir.files.log_dir))
        }),
    };
    match result {
        Ok(()) => Ok(()),
        // `logs view | head`: the reader went away; that is not an error.
        Err(LogsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        Err(e @ LogsError::Usage(_)) => Err((2, e.to_string())),
        Err(e) => Err((1, e.to_string())),
    }
}

/// The configuration `serve` runs with, from its flags.
fn serve_config(args: ServeArgs) -> ServeConfig {
    ServeConfig {
        listen: args.listen,
        log_dir: args.log_dir,
        policy_dir: args.policy_dir,
        limits: StoreLimits {
            history_len: args.history_len,
            max_nodes: args.max_nodes,
        },
        attention: vaultmesh_engines::attention::EngineOptions {
            tick: args.attention_tick,
            restart_grace: args.restart_grace,
        },
        scan_tick: args.scan_tick,
        ledger_interval: args.ledger_interval,
        ledger_origin: args.ledger_origin,
        access: args.access_team_domain.map(|team_domain| {
            vaultmesh_command_center::access::AccessConfig {
                team_domain,
                aud: args.access_aud,
                jwks_url: args.access_jwks_url,
                certs_file: args.access_certs_file,
            }
        }),
        admin_token: args.admin_token,
        agent_rate: args.agent_rate,
        agent_burst: args.agent_burst,
        budgets: vaultmesh_engines::budget::Limits {
            heartbeats: args.heartbeat_budget,
            scans: args.scan_budget,
            receipts: args.receipt_budget,
        },
        fleet_budgets: vaultmesh_engines::budget::Limits {
            heartbeats: args.fleet_heartbeat_budget,
            scans: args.fleet_scan_budget,
            receipts: args.fleet_receipt_budget,
        },
        enroll_rate: args.enroll_rate,
        enroll_burst: args.enroll_burst,
        sse: vaultmesh_command_center::sse::StreamLimits {
            per_identity: args.sse_per_identity,
            per_address: args.sse_per_address,
            total: args.sse_total,
        },
        connections: vaultmesh_command_center::listener::ConnLimits {
            max_connections: args.max_connections,
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            write_timeout: args.write_timeout,
        },
        heartbeat_rotate_bytes: args.heartbeat_rotate_size,
        heartbeat_retention: args.heartbeat_retention,
        sse_keepalive: args.sse_keepalive,
        sse_buffer: args.sse_buffer,
        enroll_tokens: args.enroll_token,
        signing_key: vaultmesh_command_center::config::SigningKey::resolve(
            args.signing_key,
            std::env::var_os("CREDENTIALS_DIRECTORY")
                .as_deref()
                .map(std::path::Path::new),
        ),
        store_url: args.store_url,
        notify_config: args.notify_config,
        min_free: args.min_free,
        disk_check: args.disk_check,
        request_timeout: args.request_timeout,
        body_timeout: args.body_timeout,
        body_memory: usize::try_from(args.body_memory).unwrap_or(usize::MAX),
        allowed_hosts: args.allowed_host,
    }
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let config = serve_config(args);
    config.prepare().map_err(|e| (2, e))?;
    let server = Server::bind(&config).await.map_err(|e| match e {
        ServeError::Config(m) => (2, m),
        ServeError::Locked(e) => (2, e.to_string()),
        other => (1, other.to_string()),
    })?;
    let replay = server.replay_report();
    if !replay.skipped.is_empty() {
        eprintln!(
            "warning: skipped {} bad log line(s) during replay; first: {}:{}: {}",
            replay.skipped.len(),
            replay.skipped[0].file.display(),
            replay.skipped[0].line,
            replay.skipped[0].reason
        );
    }
    let hosts = &server.state().hosts;
    if config.access.is_some() && !hosts.has_public() {
        eprintln!(
            "warning: Cloudflare Access is configured but no --allowed-host (nor a console_url in --notify-config): admins reaching the public hostname get 421; add --allowed-host <the public hostname>"
        );
    }
    tracing::info!(hosts = %hosts.names().join(","), "Admin requests are answered for these hosts only (--allowed-host).");
    if server.state().tokens.0.is_empty() {
        eprintln!("warning: no --enroll-token configured: new agents cannot enroll");
    }
    if server.state().cc_key.is_none() {
        tracing::info!(
            "No signing key (--signing-key, or the systemd credential cc.key): commands cannot be issued."
        );
    }
    println!(
        "vaultmesh-command-center listening on http://{}",
        server.local_addr()
    );
    tracing::info!(addr = %server.local_addr(), "Command Center listening.");
    let cancel = service::shutdown_token();
    let watchdog = service::spawn_watchdog(cancel.clone());
    reload_policies_on_sighup(std::sync::Arc::clone(&server.state().policies));
    service::notify_ready(&format!("serving on {}", server.local_addr()));
    let stopping = cancel.clone();
    let result = server
        .run(async move {
            stopping.cancelled().await;
            service::notify_stopping();
        })
        .await;
    cancel.cancel();
    if let Some(w) = watchdog {
        let _ = w.await;
    }
    result.map_err(|e| (1, e.to_string()))?;
    tracing::info!("Command Center stopped.");
    Ok(())
}

async fn run_demo(args: DemoArgs) -> Result<(), Failure> {
    let opts = DemoOptions {
        listen: args.listen,
        data_dir: args.data_dir,
        interval: args.interval,
    };
    let cancel = service::shutdown_token();
    demo::run(opts, cancel, |url| {
        println!("vaultmesh-command-center listening on {url}");
        println!("VaultMesh demo: open {url}/ (dashboard) or {url}/api/nodes — Ctrl-C to stop.");
    })
    .await
    .map_err(|e| (1, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags' defaults are the library's (the duration flags spell theirs as text).
    #[test]
    fn connection_and_stream_flags_default_to_the_library_defaults() {
        let cli = Cli::try_parse_from(["vaultmesh-command-center"]).expect("no arguments parse");
        let config = serve_config(cli.serve);
        assert_eq!(
            config.connections,
            vaultmesh_command_center::listener::ConnLimits::default()
        );
        assert_eq!(
            config.sse,
            vaultmesh_command_center::sse::StreamLimits::default()
        );
    }
}
