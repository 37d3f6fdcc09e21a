//! The reference relay (`tests/js/runner-relay.js`, socket.io 4.8 on Node)
//! as a child process, driven over its stdio lines.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::{WAIT, ensure_node_modules, js_dir};

/// The API key the reference relay is started with.
pub const KEY: &str = "js-key";

/// The Node relay process and what it reported.
pub struct JsRelay {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
    port: u16,
}

impl JsRelay {
    pub async fn start() -> JsRelay {
        ensure_node_modules();
        let mut child = Command::new("node")
            .arg(js_dir().join("runner-relay.js"))
            .arg(KEY)
            .current_dir(js_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting node (Node.js is needed for this test)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("relay wrote {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut relay = JsRelay {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            port: 0,
        };
        let listening = relay.expect(|v| v["type"] == "listening").await;
        relay.port = listening["port"].as_u64().unwrap() as u16;
        relay
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The first report from now on matching `pred`.
    pub async fn expect(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("waiting for the JS relay; seen:\n{}", self.dump()))
                .expect("the JS relay exited");
            self.seen.push(line.clone());
            if pred(&line) {
                return line;
            }
        }
    }

    pub async fn expect_event(&mut self, event: &str) -> Value {
        self.expect(|v| v["type"] == "event" && v["event"] == event)
            .await
    }

    /// The reports so far, one per line.
    pub fn dump(&self) -> String {
        let lines: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        lines.join("\n")
    }

    /// Everything reported so far.
    pub fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.seen.iter().filter(|v| pred(v)).count()
    }

    pub async fn command(&mut self, cmd: Value) {
        self.command_text(&cmd.to_string()).await;
    }

    /// A command line as written (JSON that a `Value` cannot hold, such as
    /// a lone surrogate escape, which Node's `JSON.parse` takes).
    pub async fn command_text(&mut self, cmd: &str) {
        let mut line = cmd.to_owned();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("writing to the JS relay");
        self.stdin.flush().await.unwrap();
    }

    pub async fn quit(mut self) {
        self.command(json!({"cmd": "quit"})).await;
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}
