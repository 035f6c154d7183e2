//! One `hookgate dev` per data directory. Two on one directory would both consume its queue
//! and answer for its claims while each believes it is alone (each prints its own port, and
//! events sent to one are acted on by the other). The lock is the operating system's
//! (`flock` on `dev.lock`): it ends with the process, however it ends, so a crash or a
//! `kill -9` never leaves a directory locked. `hookgate dlq` may read the directory
//! meanwhile: only a second `dev` is refused.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory; it holds the owner's process id.
pub const LOCK_FILE: &str = "dev.lock";

/// Held for as long as this process serves the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another `hookgate dev`{} is running on {}; stop it, or give this one another --data-dir",
        owner.map(|pid| format!(" (process {pid})")).unwrap_or_default(),
        dir.display()
    )]
    InUse { dir: PathBuf, owner: Option<u32> },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Takes `dir` (created if missing) for this process, or says who has it.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            return Err(LockError::InUse {
                dir: dir.to_owned(),
                owner: owner.trim().parse().ok(),
            });
        }
        Err(TryLockError::Error(source)) => return Err(io(source)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hookgate-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_lock_on_a_held_directory_is_refused_naming_the_owner() {
        let dir = scratch("held");
        let held = lock_data_dir(&dir).expect("a new directory is locked");

        let refused = lock_data_dir(&dir).expect_err("the directory is held");

        match &refused {
            LockError::InUse { owner, .. } => assert_eq!(*owner, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        let message = refused.to_string();
        assert!(message.contains("another `hookgate dev`"), "{message}");
        assert!(message.contains("--data-dir"), "{message}");
        drop(held);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_released_directory_can_be_locked_again() {
        let dir = scratch("released");
        drop(lock_data_dir(&dir).expect("a new directory is locked"));

        let again = lock_data_dir(&dir);

        assert!(again.is_ok(), "{again:?}");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
