//! Talking to the person at the terminal: prompts, answers, the terminal's width.

use std::io::{BufRead, IsTerminal, Read, Write};

use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

use crate::failure::Failure;

/// Longest answer read; anything longer is not a code or a secret.
const MAX_LINE: u64 = 1024;

pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Columns of the terminal on standard output, if it is one and says.
pub fn stdout_columns() -> Option<usize> {
    terminal_size::terminal_size_of(std::io::stdout())
        .map(|(w, _)| usize::from(w.0))
        .filter(|w| *w > 0)
}

/// Prints `prompt` and reads one line from standard input (without its line end).
/// End of input is [`Failure::Cancelled`].
///
/// Codes are read with echo on: a code is worthless once used (and the one typed here is
/// used up at once), while seeing it saves mistyped attempts that could lock the account.
pub fn ask(prompt: &str) -> Result<Zeroizing<String>, Failure> {
    let mut out = std::io::stdout().lock();
    write!(out, "{prompt}")?;
    out.flush()?;
    drop(out);
    read_line()
}

fn read_line() -> Result<Zeroizing<String>, Failure> {
    let read_err = |e: std::io::Error| Failure::System(format!("cannot read standard input: {e}"));
    let mut stdin = std::io::stdin().lock();
    let mut bytes = Zeroizing::new(Vec::new());
    let n = (&mut stdin)
        .take(MAX_LINE)
        .read_until(b'\n', &mut bytes)
        .map_err(read_err)?;
    if n == 0 {
        say!("");
        return Err(Failure::Cancelled);
    }
    if !bytes.ends_with(b"\n") && n as u64 == MAX_LINE {
        // The rest of an over-long line is dropped, not read as the next answers (each of
        // which would count as a failed attempt).
        let mut rest = Zeroizing::new(Vec::new());
        loop {
            rest.clear();
            let m = (&mut stdin)
                .take(MAX_LINE)
                .read_until(b'\n', &mut rest)
                .map_err(read_err)?;
            if m == 0 || rest.ends_with(b"\n") {
                break;
            }
        }
    }
    while bytes.ends_with(b"\n") || bytes.ends_with(b"\r") {
        bytes.pop();
    }
    // Not UTF-8 is a wrong answer, not a failure to read.
    Ok(Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Reads a secret from standard input: the whole input if it is not a terminal, else one
/// line typed with echo off (restored afterwards, also on error).
pub fn read_secret() -> Result<Zeroizing<String>, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut buf = Zeroizing::new(String::new());
        stdin
            .lock()
            .take(MAX_LINE)
            .read_to_string(&mut buf)
            .map_err(|e| Failure::refused(format!("cannot read the secret: {e}")))?;
        return Ok(buf);
    }
    let saved = termios::tcgetattr(&stdin)
        .map_err(|e| Failure::System(format!("cannot read terminal settings: {e}")))?;
    let mut quiet = saved.clone();
    // No echo, and Ctrl-C arrives as a character (so echo is always turned back on).
    quiet
        .local_flags
        .remove(LocalFlags::ECHO | LocalFlags::ISIG);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    termios::tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet)
        .map_err(|e| Failure::System(format!("cannot turn echo off: {e}")))?;
    {
        let mut err = std::io::stderr();
        let _ = write!(err, "Secret (base32; not shown): ");
        let _ = err.flush();
    }
    let line = read_line();
    let _ = termios::tcsetattr(&stdin, SetArg::TCSAFLUSH, &saved);
    let line = line?;
    if line.contains('\x03') {
        return Err(Failure::Cancelled);
    }
    Ok(line)
}
