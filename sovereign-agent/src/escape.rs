//! Workload-controlled text made safe for where people read it. A watched workload chooses its
//! `comm`, its executable's path, its command line and the names it resolves; the agent
//! prints them in a terminal (`tail`), posts them to a chat (the webhook's Slack format) and
//! writes them into spreadsheets (CSV exports). Each medium has its own way to turn text into
//! an action, so each gets its own escape:
//!
//! - [`terminal`]: control characters (an escape sequence can rewrite the screen, set the
//!   window title or, in some terminals, run a command) and bidirectional overrides (which
//!   reorder what is shown) become visible `\x1b`-style escapes.
//! - [`chat`]: Slack's control sequences (`<!channel>`, `<https://evil.example|re-login>`)
//!   are escaped (`&`, `<`, `>`), and the text is set in inline code, where neither Slack nor
//!   Markdown chats (Mattermost, Teams) render links, mentions or formatting.
//! - [`csv_cell`]: a cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR
//!   first) is prefixed with `'`, as OWASP recommends; numbers stay numbers.
use std::{borrow::Cow, fmt::Write as _};

/// Whether `c` must not reach a terminal as it is.
fn unsafe_for_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character and bidirectional override shown as an escape.
pub fn terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_for_terminal) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_for_terminal(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// `s` as inline code in a chat message: no link, mention or formatting can come of it.
pub fn chat(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('`');
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // A backtick would end the code span.
            '`' => out.push('\''),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('`');
    out
}

/// `s` as a CSV cell no spreadsheet runs as a formula.
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if formula && s.parse::<f64>().is_err() {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_sequences_and_overrides_and_keeps_the_rest() {
        assert_eq!(terminal("/usr/bin/curl"), "/usr/bin/curl");
        assert_eq!(terminal("名前.example"), "名前.example");
        assert_eq!(
            terminal("evil\x1b]0;owned\x07\x1b[2J"),
            "evil\\x1b]0;owned\\x07\\x1b[2J"
        );
        assert_eq!(terminal("a\nb\u{9b}c"), "a\\x0ab\\x9bc");
        assert_eq!(terminal("txt\u{202e}exe.sh"), "txt\\u{202e}exe.sh");
    }

    #[test]
    fn chat_text_pings_nobody_and_links_nowhere() {
        assert_eq!(chat("<!channel>"), "`&lt;!channel&gt;`");
        assert_eq!(
            chat("<https://evil.example/|re-login>"),
            "`&lt;https://evil.example/|re-login&gt;`"
        );
        assert_eq!(
            chat("a`[x](https://e.example)`"),
            "`a'[x](https://e.example)'`"
        );
        assert_eq!(chat("two\nlines & more"), "`two lines &amp; more`");
    }

    #[test]
    fn csv_cells_that_would_be_formulas_are_quoted() {
        for f in [
            "=HYPERLINK(\"https://e.example\")",
            "+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
        ] {
            assert_eq!(csv_cell(f), format!("'{f}"));
        }
        for plain in ["curl", "-5", "+1", "12.5", "", "a=b"] {
            assert_eq!(csv_cell(plain), plain);
        }
    }
}
