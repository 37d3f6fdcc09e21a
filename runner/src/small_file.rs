//! Reading a small file the runner does not control (the usage cache, which
//! every worker is told the path of; the state file): regular files only,
//! opened non-blocking, with a size cap.
//!
//! A FIFO put in such a place would block a plain `open` or `read` forever
//! (and with it a thread of the runtime's blocking pool); a symlink to
//! `/dev/zero` would make a plain read fill memory. Here the open never
//! waits (`O_NONBLOCK`, `O_NOCTTY`), the opened file itself is checked
//! (`fstat`, so nothing can be swapped in between), and at most `max + 1`
//! bytes are ever read.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// Why a small file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SmallFileError {
    /// Opening or reading failed (`NotFound` among others).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It is a directory, a FIFO, a socket or a device.
    #[error("it is not a regular file but a {0}")]
    NotRegular(&'static str),
    /// It is larger than the cap.
    #[error("it is larger than {max} bytes")]
    TooLarge {
        /// The cap.
        max: u64,
    },
}

impl SmallFileError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SmallFileError::Io(err) if err.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The content of the regular file at `path`, at most `max` bytes.
/// Blocking, but never for long: it does not wait for a writer.
pub fn read_small_file(path: &Path, max: u64) -> Result<Vec<u8>, SmallFileError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)?;
    check_regular(&file)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(SmallFileError::TooLarge { max });
    }
    Ok(bytes)
}

fn check_regular(file: &File) -> Result<(), SmallFileError> {
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(());
    }
    Err(SmallFileError::NotRegular(if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else {
        "special file"
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_small_file(&path, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read_small_file(&path, 9),
            Err(SmallFileError::TooLarge { max: 9 })
        ));
        assert!(
            read_small_file(&dir.path().join("none"), 9)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn special_files_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        // On a thread with a deadline: a blocking open would never return.
        let (tx, rx) = std::sync::mpsc::channel();
        let paths = [fifo, zero, dir.path().to_owned()];
        std::thread::spawn(move || {
            for path in paths {
                let _ = tx.send(read_small_file(&path, 1 << 20).map(|b| b.len()));
            }
        });
        for kind in ["FIFO", "character device", "directory"] {
            let result = rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("reading a {kind} blocked"));
            match result {
                Err(SmallFileError::NotRegular(k)) => assert_eq!(k, kind),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }
}
