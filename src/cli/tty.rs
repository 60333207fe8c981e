//! Reading a secret from the terminal without echo. Echo is switched off *before* the prompt
//! is shown (so input that arrives right after the prompt, e.g. a paste, is never echoed), and
//! the terminal's settings are restored on every path out, including errors.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};

use rustix::termios::{self, LocalModes, OptionalActions, Termios};

/// Restores the saved terminal settings on drop.
struct Restore<'a> {
    tty: &'a File,
    saved: Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.tty, OptionalActions::Now, &self.saved);
    }
}

/// Prompts on the controlling terminal and reads one line with echo off.
pub fn prompt_secret(prompt: &str) -> std::io::Result<String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let saved = termios::tcgetattr(&tty)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    termios::tcsetattr(&tty, OptionalActions::Now, &quiet)?;
    let _restore = Restore { tty: &tty, saved };
    (&tty).write_all(prompt.as_bytes())?;
    (&tty).flush()?;
    let mut line = String::new();
    BufReader::new(&tty).read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
