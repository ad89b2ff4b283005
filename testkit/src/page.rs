//! Small real HTTP servers on loopback for tests: any axum router on its own thread
//! ([`Served`]), and a web page on another origin ([`Page`]) — the attacker's site in the
//! cross-site and DNS-rebinding tests, loaded by the real Chromium of [`crate::browser`].

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;

/// A router served on `127.0.0.1:PORT` from its own thread and runtime, until dropped.
#[derive(Debug)]
pub struct Served {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Served {
    /// Serves `app` on `ip` (a loopback address) and a free port.
    pub fn start(app: Router, ip: &str) -> Served {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let bind = format!("{ip}:0");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
                let _ = addr_tx.send(listener.local_addr().expect("addr"));
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("test server started");
        Served {
            addr,
            stop: Some(stop_tx),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// One HTML document, served at `/` from a port of its own.
#[derive(Debug)]
pub struct Page(Served);

impl Page {
    pub fn start(html: String) -> Page {
        let app = Router::new().route("/", get(move || async move { Html(html) }));
        Page(Served::start(app, "127.0.0.1"))
    }

    /// The page's URL under `host` (e.g. `localhost`, a different site than `127.0.0.1`).
    pub fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/", self.0.addr.port())
    }
}
