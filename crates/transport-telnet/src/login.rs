//! Getting from a fresh connection to a shell that runs framed commands:
//! the login dialogue, then (on a POSIX shell) a setup line that turns the
//! terminal's echo and output processing off and proves the shell answers.

use regex::bytes::Regex;
use tether_core::{Error, ErrorKind, Result};
use tokio::time::Instant;

use crate::exec::clean_console_text;
use crate::options::TelnetOptions;
use crate::terminal::Terminal;

/// Text kept while waiting for a prompt: a prompt is at the end of what
/// arrived, so older text (a long banner or MOTD) can go.
const PROMPT_WINDOW: usize = 4096;

/// What a login may answer after the password when it refuses.
const REFUSALS: &[&str] = &["incorrect", "denied", "failed", "invalid", "bad password", "authentication failure"];

/// Who to log in as.
pub(crate) struct Login<'a> {
    pub(crate) user: Option<&'a str>,
    pub(crate) password: Option<&'a str>,
}

/// The last line of `text`, without trailing blanks, lower-cased.
fn last_line(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let trimmed = text.trim_end_matches([' ', '\t']);
    trimmed.rsplit(['\n', '\r']).next().unwrap_or("").to_lowercase()
}

/// Where a prompt ending in `ending` (blanks after it allowed) ends in `text`.
fn prompt_end(text: &[u8], ending: &[u8]) -> Option<usize> {
    let trimmed = text.len() - text.iter().rev().take_while(|b| matches!(b, b' ' | b'\t')).count();
    (trimmed > 0 && text[..trimmed].ends_with(ending)).then_some(text.len())
}

fn is_password_prompt(line: &str) -> bool {
    ["password", "passcode", "passphrase"].iter().any(|word| line.contains(word))
}

fn auth_error(what: &str, why: impl Into<String>) -> Error {
    Error::new(ErrorKind::AuthFailed, "connect").with_context(format!("{what}: {}", why.into()))
}

/// Answers the login and password prompts. Succeeds once something that is
/// neither a refusal nor another login prompt follows the password (the
/// shell's first answer is checked by [`prepare_shell`]).
pub(crate) async fn log_in(
    terminal: &mut Terminal,
    options: &TelnetOptions,
    login: &Login<'_>,
    deadline: Instant,
) -> Result<()> {
    let what = terminal.what.clone();
    let ending = options.login_prompt.as_bytes();
    let user = login.user.ok_or_else(|| {
        Error::new(ErrorKind::InvalidConfig, "connect")
            .with_context(format!("{what}: telnet_options.login is set, but the host has no user to log in as"))
    })?;
    terminal.read_until("login", deadline, PROMPT_WINDOW, |text| prompt_end(text, ending)).await?;
    terminal.writer.send_text(format!("{user}\r").as_bytes()).await?;

    // Either the password prompt, or (no password set) the shell already.
    let shell_prompt = Regex::new(&options.prompt).map_err(|e| {
        Error::new(ErrorKind::InvalidConfig, "connect").with_context(format!("telnet_options.prompt: {e}"))
    })?;
    let asked = terminal
        .read_until("login", deadline, PROMPT_WINDOW, |text| {
            prompt_end(text, ending).or_else(|| shows_prompt(&shell_prompt, text).then_some(text.len()))
        })
        .await?;
    let line = last_line(&asked);
    if !is_password_prompt(&line) {
        if prompt_end(&asked, ending).is_some()
            && REFUSALS.iter().any(|r| String::from_utf8_lossy(&asked).to_lowercase().contains(r))
        {
            return Err(auth_error(&what, format!("the login `{user}` was refused")));
        }
        // Logged in without a password.
        return Ok(());
    }
    let password = login.password.ok_or_else(|| {
        auth_error(&what, format!("the host asks for a password for `{user}` and the inventory has none"))
    })?;
    // Sent on its own: the password is never part of a logged line.
    let mut typed = password.as_bytes().to_vec();
    typed.push(b'\r');
    terminal.writer.send_text(&typed).await?;
    typed.fill(0);

    // A refusal ("Login incorrect") or a new login prompt means no; a shell
    // prompt, or anything that stops arriving, means yes, confirmed by the
    // shell's answer to the setup line.
    let verdict = terminal
        .read_until("login", deadline, PROMPT_WINDOW, |text| {
            let lower = String::from_utf8_lossy(text).to_lowercase();
            if REFUSALS.iter().any(|r| lower.contains(r)) || prompt_end(text, ending).is_some() {
                return Some(text.len());
            }
            shows_prompt(&shell_prompt, text).then_some(text.len())
        })
        .await?;
    let lower = String::from_utf8_lossy(&verdict).to_lowercase();
    if REFUSALS.iter().any(|r| lower.contains(r))
        || (prompt_end(&verdict, ending).is_some() && !shows_prompt(&shell_prompt, &verdict))
    {
        return Err(auth_error(&what, format!("the password for `{user}` was refused")));
    }
    Ok(())
}

/// Makes a POSIX shell fit for framed commands and waits for its answer.
///
/// The terminal loses its echo, its output processing (so output bytes
/// arrive exact, LF not turned into CR LF) and its canonical line limit.
/// Then the login shell is replaced by a plain `sh` whose stderr is not the
/// terminal, which makes it non-interactive: no prompts, no line editor
/// (which would read typed text a byte at a time and act on TAB), no job
/// control. It catches SIGINT and SIGQUIT, so ^C ends the running command
/// and not the session; a command's own stderr is sent to the terminal by
/// the framing (`exec::framed_line`).
pub(crate) async fn prepare_shell(terminal: &mut Terminal, token: &str, deadline: Instant) -> Result<()> {
    let replace = "stty -echo -opost -icanon min 1 time 0 2>/dev/null; exec sh 2>/dev/null\r";
    terminal.writer.send_text(replace.as_bytes()).await?;
    // A line editor may read ahead and take a line sent right behind the
    // `exec` with it, so the probe goes out again until the new shell
    // answers. Extra answers come before the first command's begin marker,
    // where the framing drops everything.
    let probe = format!("trap : INT QUIT; printf '\\036R{token}\\037\\n'\r");
    let marker = format!("\x1eR{token}\x1f\n").into_bytes();
    let mut interval = FIRST_PROBE_INTERVAL;
    loop {
        terminal.writer.send_text(probe.as_bytes()).await?;
        let wait = deadline.min(Instant::now() + interval);
        interval = (interval * 2).min(PROBE_INTERVAL);
        let answer = terminal.read_until("connect", wait, PROMPT_WINDOW + marker.len(), |text| {
            find(text, &marker).map(|at| at + marker.len())
        });
        match answer.await {
            Ok(_) => return Ok(()),
            Err(err) if err.kind() == ErrorKind::Timeout && Instant::now() < deadline => continue,
            Err(err) if err.kind() == ErrorKind::Timeout => {
                return Err(err.with_context(
                    "the host did not answer as a POSIX shell (set telnet_options.posix_shell = false for a console without one)",
                ));
            }
            Err(err) => return Err(err),
        }
    }
}

/// How long a console's text must stay still after its prompt at connect.
const PROMPT_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// How soon the shell probe is sent again while the shell is silent: the
/// first one is usually taken by the line editor with the `exec`, so the
/// second follows soon, and later ones back off to [`PROBE_INTERVAL`].
const FIRST_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(25);

/// The longest wait between two shell probes.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits for a console's prompt (no POSIX shell): whatever came first is dropped.
pub(crate) async fn wait_for_prompt(terminal: &mut Terminal, prompt: &Regex, deadline: Instant) -> Result<()> {
    // An empty line makes a console that already printed its prompt print it again.
    terminal.writer.send_text(b"\r").await?;
    terminal
        .read_until("connect", deadline, PROMPT_WINDOW, |text| shows_prompt(prompt, text).then_some(text.len()))
        .await?;
    // The empty line may bring a second prompt after the first: let it come
    // and go, so the first command's output does not start with it.
    loop {
        match terminal.receive("connect", Instant::now() + PROMPT_SETTLE).await {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::Timeout => break,
            Err(err) => return Err(err),
        }
    }
    terminal.pending.clear();
    Ok(())
}

/// Whether `prompt` matches `text` as a user reads it: without the CRs and
/// ANSI sequences around it (a Zephyr prompt ends with a colour reset,
/// `\x1b[1;32muart:~$ \x1b[m`, which a pattern anchored at the end would
/// never match raw). `exec::until_prompt` matches the same cleaned text.
fn shows_prompt(prompt: &Regex, text: &[u8]) -> bool {
    prompt.is_match(&clean_console_text(text))
}

/// The first position of `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    // On every chunk of a command's output: memchr's search, not a window scan.
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_found_at_the_end_only() {
        assert_eq!(prompt_end(b"Debian\r\nlogin: ", b":"), Some(15));
        assert_eq!(prompt_end(b"login:", b":"), Some(6));
        assert_eq!(prompt_end(b"time: 12:00\r\n", b":"), None);
        assert_eq!(prompt_end(b"   ", b":"), None);
        assert_eq!(last_line(b"root\r\nPassword: "), "password:");
        assert!(is_password_prompt(&last_line(b"\r\nPassword: ")));
        assert_eq!(find(b"abc\x1eR1\x1f\n", b"\x1eR1\x1f\n"), Some(3));
    }

    #[test]
    fn a_coloured_prompt_is_seen_through_its_colours() {
        let prompt = Regex::new(r"[#$>%] ?$").unwrap();
        let zephyr = b"\r\n\x1b[1;32muart:~$ \x1b[m";
        assert!(!prompt.is_match(zephyr), "the raw text ends with the colour reset");
        assert!(shows_prompt(&prompt, zephyr));
        assert!(!shows_prompt(&prompt, b"\x1b[1;32muart:~$ \x1b[mecho hi\r\n"));
    }
}
