//! What the tool prints for a reader: `out!` and `outln!` in place of `print!` and
//! `println!`, which panic when the reader has gone (`hookgate dlq show ID | head`). Here a
//! reader that has gone ends the command quietly and successfully, as it ends `cat`; any
//! other failure to write (a full disk behind a redirection) ends it with the error.

use std::io::Write;

/// Writes `text` to stdout, or ends the process as above.
pub fn write(text: std::fmt::Arguments<'_>, newline: bool) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(text)
        .and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => {
            eprintln!("hookgate: cannot write to stdout: {error}");
            std::process::exit(1);
        }
    }
}

/// `print!`, for a reader that may go away.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*), false) };
}

/// `println!`, for a reader that may go away.
macro_rules! outln {
    () => { $crate::output::write(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*), true) };
}
