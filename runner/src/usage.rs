//! Provider usage: the cache file another program keeps at
//! `PIZZAPI_USAGE_CACHE_PATH`, served on `get_usage` and pushed as an
//! unsolicited `usage_data` whenever the file changes.
//!
//! The file is polled (its modification time, length and inode) at a fixed
//! modest interval rather than watched with inotify: one `stat` every two
//! seconds costs nothing, works on every file system, and sees the common
//! "write a temporary file and rename it" update as well as in-place writes.
//!
//! Every worker is told the file's path, so its content is not trusted: it
//! is read with [`read_small_file`] (a regular file, at most
//! [`UsageSource::with_max_bytes`] bytes, opened without waiting), and
//! anything else is reported as no usage.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use runner_protocol::{UsageCache, UsageData};
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;
use crate::small_file::read_small_file;

/// The largest usage cache read unless [`UsageSource::with_max_bytes`] says
/// otherwise.
pub const USAGE_CACHE_MAX_BYTES: u64 = 1024 * 1024;

/// Reads the usage cache file.
#[derive(Debug, Clone)]
pub struct UsageSource {
    path: PathBuf,
    max_bytes: u64,
}

impl UsageSource {
    /// A source reading `path`.
    pub fn new(path: PathBuf) -> Self {
        UsageSource {
            path,
            max_bytes: USAGE_CACHE_MAX_BYTES,
        }
    }

    /// Reads at most `max` bytes; a larger file counts as no usage.
    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cache's content. A missing, unreadable, oversized, special
    /// (FIFO, device) or malformed file gives empty providers, with a log
    /// line saying which it was.
    pub async fn read(&self) -> UsageCache {
        let path = self.path.clone();
        let max = self.max_bytes;
        let read = tokio::task::spawn_blocking(move || read_small_file(&path, max))
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string()).into()));
        match read {
            Ok(bytes) => match serde_json::from_slice::<UsageCache>(&bytes) {
                Ok(cache) => cache,
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), error = %err, "usage cache is not valid; reporting no usage");
                    UsageCache::default()
                }
            },
            Err(err) if err.is_not_found() => {
                tracing::info!(path = %self.path.display(), "no usage cache; reporting no usage");
                UsageCache::default()
            }
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "usage cache is unreadable; reporting no usage");
                UsageCache::default()
            }
        }
    }

    /// The reply to `get_usage`.
    pub async fn reply(&self, request_id: Option<String>) -> UsageData {
        UsageData {
            request_id,
            data: self.read().await,
        }
    }

    /// What identifies one version of the file; `None` when there is no file.
    async fn fingerprint(&self) -> Option<Fingerprint> {
        use std::os::unix::fs::MetadataExt;
        let meta = tokio::fs::metadata(&self.path).await.ok()?;
        Some(Fingerprint {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }

    /// Takes a first look at the file, then returns the watcher: it polls
    /// the file every `interval` until `cancel`, emitting an unsolicited
    /// `usage_data` (no `requestId`) after every change, including the file
    /// appearing or disappearing. The state found by the first look is not
    /// reported.
    pub async fn watch(
        self,
        interval: Duration,
        outbox: Outbox,
        cancel: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut last = self.fingerprint().await;
        async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                let now = self.fingerprint().await;
                if now != last {
                    last = now;
                    tracing::info!(path = %self.path.display(), "usage cache changed; sending usage_data");
                    outbox.emit(self.reply(None).await);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

#[cfg(test)]
mod tests {
    use runner_protocol::RunnerEvent;
    use serde_json::json;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn missing_and_unreadable_caches_give_empty_providers() {
        let dir = tempfile::tempdir().unwrap();
        let missing = UsageSource::new(dir.path().join("nope.json"));
        assert_eq!(missing.read().await, UsageCache::default());

        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, "{oops").unwrap();
        assert_eq!(
            UsageSource::new(garbage).read().await,
            UsageCache::default()
        );

        let a_directory = UsageSource::new(dir.path().to_owned());
        assert_eq!(a_directory.read().await, UsageCache::default());

        let reply = missing.reply(Some("r1".into())).await;
        assert_eq!(
            RunnerEvent::from(reply).payload(),
            json!({"requestId": "r1", "data": {"providers": {}}})
        );
    }

    #[tokio::test]
    async fn special_and_oversized_caches_give_empty_providers_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let zero = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let big = dir.path().join("big.json");
        std::fs::write(
            &big,
            format!("{{\"providers\": {{}}, \"pad\": \"{}\"}}", "x".repeat(2000)),
        )
        .unwrap();
        for source in [
            UsageSource::new(fifo),
            UsageSource::new(zero),
            UsageSource::new(big).with_max_bytes(1000),
        ] {
            let read = tokio::time::timeout(WAIT, source.read())
                .await
                .unwrap_or_else(|_| panic!("reading {} blocked", source.path().display()));
            assert_eq!(read, UsageCache::default(), "{}", source.path().display());
        }
    }

    #[tokio::test]
    async fn a_valid_cache_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage-cache.json");
        let content = json!({"fetchedAt": 5, "providers": {"anthropic": {"windows": [
            {"label": "5h", "utilization": 12.5, "resets_at": "2026-01-01T00:00:00Z"}]}}});
        std::fs::write(&path, content.to_string()).unwrap();
        let reply = UsageSource::new(path).reply(None).await;
        assert_eq!(RunnerEvent::from(reply).payload(), json!({"data": content}));
    }

    #[tokio::test]
    async fn a_change_sends_unsolicited_usage_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage-cache.json");
        let (outbox, mut rx) = Outbox::channel();
        let cancel = CancellationToken::new();
        let source = UsageSource::new(path.clone());
        // The first look sees no file; nothing is sent for it.
        let watcher = source
            .clone()
            .watch(Duration::from_millis(20), outbox, cancel.clone())
            .await;
        let task = tokio::spawn(watcher);

        // Appearing: written atomically, as the cache's writer does.
        let tmp = dir.path().join("tmp.json");
        std::fs::write(
            &tmp,
            json!({"fetchedAt": 1, "providers": {"p": {"windows": []}}}).to_string(),
        )
        .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("waiting for usage_data after the file appeared")
            .unwrap();
        assert_eq!(
            ev.payload(),
            json!({"data": {"fetchedAt": 1, "providers": {"p": {"windows": []}}}})
        );

        // Disappearing: empty providers.
        std::fs::remove_file(&path).unwrap();
        let ev = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("waiting for usage_data after the file was removed")
            .unwrap();
        assert_eq!(ev.payload(), json!({"data": {"providers": {}}}));

        cancel.cancel();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("waiting for the watcher to stop")
            .unwrap();
        assert!(rx.try_recv().is_err(), "no further events");
    }

    #[tokio::test]
    async fn an_unchanged_file_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage-cache.json");
        std::fs::write(&path, "{}").unwrap();
        let (outbox, mut rx) = Outbox::channel();
        let cancel = CancellationToken::new();
        tokio::time::pause();
        let watcher = UsageSource::new(path)
            .watch(Duration::from_millis(10), outbox, cancel.clone())
            .await;
        let task = tokio::spawn(watcher);
        // Fifty polls of an unchanged file (paused time advances on its own).
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
        task.await.unwrap();
        assert!(rx.try_recv().is_err());
    }
}
