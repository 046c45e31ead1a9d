//! The data directory: the identity key, the log file and the control socket.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::CliError;

/// Name of the identity key file in the data directory: the node's 32-byte ed25519 secret key,
/// which is both its iroh endpoint identity and the key that signs its log entries.
pub const IDENTITY: &str = "identity.key";
/// Name of the log file in the data directory.
pub const LOG: &str = "log.redb";
/// Name of the control socket `serve` listens on in the data directory.
pub const SOCKET: &str = "control.sock";

/// A checked data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// The existing directory `path`: an error naming the problem if it is missing or is not a
    /// directory.
    pub fn existing(path: &Path) -> Result<Self, CliError> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(DataDir {
                path: path.to_path_buf(),
            }),
            Ok(_) => Err(CliError::DataDir {
                path: path.to_path_buf(),
                reason: "exists but is not a directory; pass the node's directory with --data-dir"
                    .into(),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(CliError::DataDir {
                path: path.to_path_buf(),
                reason: "does not exist; pass the node's directory with --data-dir, or create a node there with `oplog serve --data-dir DIR`".into(),
            }),
            Err(e) => Err(CliError::DataDir {
                path: path.to_path_buf(),
                reason: format!("cannot be read ({e}); check its permissions"),
            }),
        }
    }

    /// The directory `path`, created (one level, mode 0700) if it does not exist.
    pub fn create(path: &Path) -> Result<Self, CliError> {
        if !path.exists() {
            std::fs::create_dir(path).map_err(|e| CliError::DataDir {
                path: path.to_path_buf(),
                reason: format!(
                    "cannot be created ({e}); check that its parent exists and is writable"
                ),
            })?;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        }
        Self::existing(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log file.
    pub fn log(&self) -> PathBuf {
        self.path.join(LOG)
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET)
    }

    /// The identity key: read from `identity.key`, or created there (random, mode 0600) if
    /// `create` and the file does not exist.
    pub fn identity(&self, create: bool) -> Result<[u8; 32], CliError> {
        let path = self.path.join(IDENTITY);
        let bad = |reason: String| CliError::Identity {
            path: path.clone(),
            reason,
        };
        match std::fs::File::open(&path) {
            Ok(mut f) => {
                let mut bytes = Vec::with_capacity(33);
                Read::by_ref(&mut f)
                    .take(33)
                    .read_to_end(&mut bytes)
                    .map_err(|e| bad(format!("cannot be read ({e})")))?;
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    bad(format!(
                        "holds {}{} bytes, not the 32 of an ed25519 secret key; restore the node's key file (a new key would make it a different node)",
                        bytes.len(),
                        if bytes.len() > 32 { " or more" } else { "" }
                    ))
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut r| r.read_exact(&mut key))
                    .map_err(|e| bad(format!("no randomness to create it ({e})")))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| bad(format!("cannot be created ({e})")))?;
                f.write_all(&key)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| bad(format!("cannot be written ({e})")))?;
                Ok(key)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Err(bad(
                "does not exist; this directory holds no node yet (`oplog serve` or a write creates one)".into(),
            )),
            Err(e) => Err(bad(format!("cannot be opened ({e}); check its permissions"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::existing(dir.path()).unwrap();
        assert!(d.identity(false).is_err(), "no key and no creation");
        let k = d.identity(true).unwrap();
        assert_eq!(d.identity(false).unwrap(), k, "the same key is read back");
        let mode = std::fs::metadata(dir.path().join(IDENTITY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(IDENTITY), [1u8; 31]).unwrap();
        assert!(matches!(d.identity(true), Err(CliError::Identity { .. })));
    }

    #[test]
    fn a_file_or_a_missing_path_is_no_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            DataDir::existing(&file),
            Err(CliError::DataDir { .. })
        ));
        assert!(matches!(
            DataDir::existing(&dir.path().join("nope")),
            Err(CliError::DataDir { .. })
        ));
        assert!(DataDir::create(&dir.path().join("new")).is_ok());
    }
}
