//! The registry of connected clients, for CLIENT LIST/KILL/INFO and INFO's
//! `clients` section. Each connection task registers a [`ClientHandle`] and
//! removes it when it ends (via [`Registration`]'s drop).

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// What other tasks may see of, or do to, one client connection.
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    pub name: Mutex<String>,
    pub lib_name: Mutex<String>,
    pub lib_ver: Mutex<String>,
    pub db: AtomicUsize,
    pub resp: AtomicU8,
    pub last_command: Mutex<&'static str>,
    pub last_interaction_ms: AtomicI64,
    /// Channels and patterns subscribed to: a client with any is of type
    /// `pubsub` (CLIENT LIST `flags=P`, CLIENT KILL TYPE).
    pub subscriptions: AtomicUsize,
    /// Waiting in a blocking command (CLIENT LIST `flags=b`).
    pub blocked: AtomicBool,
    killed: AtomicBool,
    kill_notify: Notify,
}

impl ClientHandle {
    pub fn new(id: u64, addr: SocketAddr, laddr: SocketAddr) -> ClientHandle {
        ClientHandle {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::new(String::new()),
            lib_name: Mutex::new(String::new()),
            lib_ver: Mutex::new(String::new()),
            db: AtomicUsize::new(0),
            resp: AtomicU8::new(2),
            last_command: Mutex::new("NULL"),
            last_interaction_ms: AtomicI64::new(crate::node::unix_ms()),
            subscriptions: AtomicUsize::new(0),
            blocked: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            kill_notify: Notify::new(),
        }
    }

    /// Asks the connection task to close (CLIENT KILL).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill_notify.notify_one();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    pub async fn killed(&self) {
        if !self.is_killed() {
            self.kill_notify.notified().await;
        }
    }

    /// One line of `CLIENT LIST` in Redis's field order.
    pub fn info_line(&self, now_ms: i64) -> String {
        let subscriptions = self.subscriptions.load(Ordering::Relaxed);
        let age = self.created.elapsed().as_secs();
        let idle =
            ((now_ms - self.last_interaction_ms.load(Ordering::Relaxed)).max(0) / 1000) as u64;
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db={} sub={} psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.name.lock(),
            age,
            idle,
            match (subscriptions > 0, self.blocked.load(Ordering::Relaxed)) {
                (true, true) => "Pb",
                (true, false) => "P",
                (false, true) => "b",
                (false, false) => "N",
            },
            self.db.load(Ordering::Relaxed),
            subscriptions,
            self.last_command.lock(),
            self.resp.load(Ordering::Relaxed),
            self.lib_name.lock(),
            self.lib_ver.lock(),
        )
    }
}

#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<BTreeMap<u64, Arc<ClientHandle>>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Removes its client from the registry when dropped.
pub struct Registration<'a> {
    registry: &'a ClientRegistry,
    pub handle: Arc<ClientHandle>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.clients.lock().remove(&self.handle.id);
    }
}

impl ClientRegistry {
    /// Registers a client unless `max` are already connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        max: usize,
    ) -> Option<Registration<'_>> {
        let mut clients = self.clients.lock();
        if clients.len() >= max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let handle = Arc::new(ClientHandle::new(id, addr, laddr));
        clients.insert(id, handle.clone());
        Some(Registration {
            registry: self,
            handle,
        })
    }

    pub fn len(&self) -> usize {
        self.clients.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.clients.lock().values().cloned().collect()
    }

    pub fn by_id(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.clients.lock().get(&id).cloned()
    }
}
