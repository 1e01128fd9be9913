//! The local console socket: a Unix stream socket that runs console commands,
//! and the client the CLI uses.
//!
//! The protocol is line-based so that `socat` can speak it too: the client
//! sends one command per line; the server answers each with a header line
//! `OK <len>` or `ERR <len>` followed by exactly `<len>` bytes of output. A
//! connection may carry any number of commands (the interactive console keeps
//! one open).
//!
//! The server thread blocks in `accept`; stopping it sets a flag and connects
//! once to wake it, and shuts down every open client connection, so stop is
//! prompt without polling.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::Mutex;

/// Longest command line the server accepts.
const MAX_COMMAND: u64 = 64 * 1024;

/// Open client connections by id, so that stop can close them.
type Clients = Arc<Mutex<HashMap<u64, UnixStream>>>;

/// Runs one command line and returns its output or error text.
pub type Exec = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// A running console socket.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    clients: Clients,
    /// The listening socket, shut down to wake the accept when the socket
    /// file is gone (its directory removed) and cannot be connected to.
    listener: UnixListener,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` with permissions `mode` and serves commands on a thread.
    /// A stale socket file (nothing listening) is replaced; a live one is an error.
    pub fn start(path: &Path, mode: u32, exec: Exec) -> io::Result<ControlServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by another running console", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let clients: Clients = Arc::default();
        let waker = listener.try_clone()?;
        let thread = {
            let stopping = Arc::clone(&stopping);
            let clients = Arc::clone(&clients);
            std::thread::Builder::new()
                .name("ecc-control".into())
                .spawn(move || accept_loop(listener, stopping, clients, exec))?
        };
        Ok(ControlServer {
            path: path.to_path_buf(),
            stopping,
            clients,
            listener: waker,
            thread: Some(thread),
        })
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving, closes client connections and removes the socket file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept: a connection normally, and when the
        // file is gone, a shutdown of the listening socket (accept then
        // fails, and the loop sees `stopping`).
        if UnixStream::connect(&self.path).is_err() {
            let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Both);
        }
        let _ = thread.join();
        for (_, c) in self.clients.lock().drain() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: UnixListener, stopping: Arc<AtomicBool>, clients: Clients, exec: Exec) {
    let next_id = AtomicU64::new(0);
    for conn in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = conn.try_clone() {
            clients.lock().insert(id, clone);
        }
        let exec = Arc::clone(&exec);
        let clients = Arc::clone(&clients);
        let _ = std::thread::Builder::new()
            .name("ecc-console".into())
            .spawn(move || {
                serve(conn, &exec);
                clients.lock().remove(&id);
            });
    }
}

fn serve(conn: UnixStream, exec: &Exec) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        match (&mut reader).take(MAX_COMMAND).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with('\n') {
            let _ = reply(
                &mut out,
                Err(format!("command longer than {MAX_COMMAND} bytes")),
            );
            return;
        }
        let command = line.trim();
        if command.is_empty() {
            continue;
        }
        if reply(&mut out, exec(command)).is_err() {
            return;
        }
    }
}

fn reply(out: &mut UnixStream, result: Result<String, String>) -> io::Result<()> {
    let (tag, body) = match result {
        Ok(b) => ("OK", b),
        Err(e) => ("ERR", e),
    };
    write!(out, "{tag} {}\n{body}", body.len())?;
    out.flush()
}

/// A connection to a node's console socket.
#[derive(Debug)]
pub struct ControlClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    pub fn connect(path: &Path) -> io::Result<ControlClient> {
        let stream = UnixStream::connect(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot connect to {}: {e}", path.display()),
            )
        })?;
        Ok(ControlClient {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    /// Runs one command: `Ok(output)`, or `Err` with the node's error text
    /// (the outer error is for the connection itself).
    pub fn exec(&mut self, command: &str) -> io::Result<Result<String, String>> {
        if command.contains('\n') {
            return Ok(Err("a command is one line".into()));
        }
        writeln!(self.writer, "{command}")?;
        self.writer.flush()?;
        let mut header = String::new();
        if self.reader.read_line(&mut header)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the node closed the console connection",
            ));
        }
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad console reply header {header:?}"),
            )
        };
        let (tag, len) = header.trim_end().split_once(' ').ok_or_else(bad)?;
        let len: usize = len.parse().map_err(|_| bad())?;
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body).into_owned();
        match tag {
            "OK" => Ok(Ok(body)),
            "ERR" => Ok(Err(body)),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_socket(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ecc-control-{tag}-{}", std::process::id()))
    }

    #[test]
    fn serves_commands_and_errors_then_stops_cleanly() {
        let path = temp_socket("serve");
        let exec: Exec = Arc::new(|cmd| match cmd {
            "fail" => Err("it failed".into()),
            other => Ok(format!("ran {other}\nline two\n")),
        });
        let server = ControlServer::start(&path, 0o600, exec).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut client = ControlClient::connect(&path).unwrap();
        assert_eq!(
            client.exec("hello").unwrap(),
            Ok("ran hello\nline two\n".into())
        );
        assert_eq!(client.exec("fail").unwrap(), Err("it failed".into()));
        server.stop();
        assert!(!path.exists(), "the socket file is removed on stop");
        assert!(
            client.exec("hello").is_err(),
            "the connection is closed on stop"
        );
    }

    #[test]
    fn stops_when_its_socket_file_was_removed() {
        let path = temp_socket("removed");
        let exec: Exec = Arc::new(|_| Ok(String::new()));
        let server = ControlServer::start(&path, 0o600, exec).unwrap();
        std::fs::remove_file(&path).unwrap();
        // Before the fix this join never returned.
        server.stop();
    }

    #[test]
    fn a_live_socket_is_not_stolen_but_a_stale_one_is_replaced() {
        let path = temp_socket("stale");
        let exec: Exec = Arc::new(|_| Ok(String::new()));
        let first = ControlServer::start(&path, 0o600, Arc::clone(&exec)).unwrap();
        let err = ControlServer::start(&path, 0o600, Arc::clone(&exec)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(first);
        // Leave a stale socket file behind: bind without serving, then drop.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let second = ControlServer::start(&path, 0o600, exec).unwrap();
        second.stop();
    }
}
