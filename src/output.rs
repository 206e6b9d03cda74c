//! Human and JSON output.

use std::io::Write;

use anyhow::Result;
use host::text::{bounded, printable};
use host::{CheckStatus, Host, PluginReport, Provenance, Status};
use serde::Serialize;

/// Set once standard output's reader has gone: later lines are dropped.
static READER_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes one line of command output to stdout (the [`outln!`] macro). When the reader has
/// gone (`EPIPE`, as when piped into `head -c 10`), this line and every later one are dropped
/// and `Ok` comes back: the command finishes its work (`lock` still writes the lock file, `sign`
/// signs every file) and exits as it would have, without output and without a panic.
///
/// Why not `SIGPIPE` back to its default, as C tools have it: the host also writes to its
/// workers' sockets and pipes, where a worker that died must be an error the host reports
/// (`plugin-crashed`), not a signal that kills the host, and a command killed half-way
/// through `lock` would leave no lock file.
pub fn print_line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    if READER_GONE.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            READER_GONE.store(true, Ordering::Relaxed);
            Ok(())
        }
        written => written,
    }
}

/// Prints a provenance record (in human form, every line escaped: an `inspect`ed file is
/// untrusted).
pub fn provenance(p: &Provenance, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, p)?;
        writeln!(out)?;
        return Ok(());
    }
    let r = &p.rustc;
    let llvm = r
        .llvm
        .as_deref()
        .map(|v| format!(", LLVM {v}"))
        .unwrap_or_default();
    let assertions = if p.profile.debug_assertions {
        "on"
    } else {
        "off"
    };
    let features = if p.features.is_empty() {
        "(none)".to_owned()
    } else {
        p.features.join(", ")
    };
    let mut lines = vec![
        format!("{} {}", p.name, p.version),
        format!("  target        {}", p.target),
        format!(
            "  rustc         {} {}, {}{llvm}",
            r.short(),
            r.commit_date,
            r.channel
        ),
        format!(
            "  profile       {} (opt-level {}, debug-assertions {assertions}), panic = {}",
            p.profile.name, p.profile.opt_level, p.profile.panic
        ),
        format!("  plugin-api    {}", p.plugin_api),
        format!("  abi_stable    {}", p.abi_stable),
        format!("  features      {features}"),
        format!("  capabilities  {}", declared(p)),
        format!("  dependencies  {} crates linked", p.dependencies.len()),
    ];
    lines.extend(p.dependencies.iter().map(|d| format!("    {d}")));
    for line in lines {
        writeln!(out, "{}", printable(&line))?;
    }
    Ok(())
}

/// The declared capabilities as `inspect` shows them: `command hello, hi; transform redact`.
fn declared(p: &Provenance) -> String {
    match &p.capabilities {
        None => "(not declared: loaded up front by lazy hosts)".to_owned(),
        Some(kinds) if kinds.values().all(Vec::is_empty) => "(declares none)".to_owned(),
        Some(kinds) => kinds
            .iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(kind, names)| format!("{kind} {}", names.join(", ")))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Prints scan or check results all at once: a table, or the documented JSON shape.
pub fn reports(host: &Host, reports: &[PluginReport], json: bool) -> Result<()> {
    if json {
        return reports_json(host, reports);
    }
    let mut table = Table::start(host)?;
    for r in reports {
        table.row(r)?;
    }
    table.finish()
}

/// The documented JSON shape of a scan or check.
pub fn reports_json(host: &Host, reports: &[PluginReport]) -> Result<()> {
    let id = host.identity();
    // Serialized straight from the reports, without an intermediate `Value` copy.
    #[derive(Serialize)]
    struct HostDoc<'a> {
        name: &'a str,
        version: &'a str,
        policy: &'a str,
        provenance: &'a Provenance,
    }
    #[derive(Serialize)]
    struct Doc<'a> {
        host: HostDoc<'a>,
        plugins: &'a [PluginReport],
    }
    let doc = Doc {
        host: HostDoc {
            name: &id.name,
            version: &id.version,
            policy: host.policy().name(),
            provenance: &id.provenance,
        },
        plugins: reports,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, &doc)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// The human table of a scan, written a row at a time as plugins finish (standard output is
/// line-buffered, so every finished row is out even if a later plugin crashes the process).
///
/// Columns have fixed widths; a longer cell pushes the rest of its row right rather than
/// widening every row, and every cell is bounded and escaped: nothing a plugin file says can
/// make the table panic, run wide without end, or drive the terminal.
pub struct Table {
    out: std::io::Stdout,
    counts: [usize; 6],
    builtins: usize,
}

/// Column widths: status, name, version, capabilities (the path is last, unpadded).
const WIDTHS: [usize; 4] = [8, 20, 10, 30];
/// At most this many capabilities are listed in a row, then `(+N more)`.
const MAX_LISTED: usize = 4;

impl Table {
    /// Prints the host line and the column header.
    pub fn start(host: &Host) -> Result<Table> {
        let id = host.identity();
        let p = &id.provenance;
        let out = std::io::stdout();
        writeln!(
            out.lock(),
            "host: {} {} (rustc {}, {}, panic = {}, plugin-api {}); policy: {}\n",
            printable(&id.name),
            printable(&id.version),
            printable(&p.rustc.short()),
            printable(&p.target),
            printable(&p.profile.panic),
            p.plugin_api,
            printable(host.policy().name())
        )?;
        writeln!(
            out.lock(),
            "{}",
            line(["STATUS", "NAME", "VERSION", "CAPABILITIES", "PATH"])
        )?;
        Ok(Table {
            out,
            counts: [0; 6],
            builtins: 0,
        })
    }

    /// Prints one plugin's row, its error and every failed or warning check.
    pub fn row(&mut self, r: &PluginReport) -> Result<()> {
        if r.status == Status::Builtin {
            self.builtins += 1;
        } else {
            self.counts[match r.status {
                Status::Loaded => 0,
                Status::Verified => 1,
                Status::Rejected => 2,
                Status::Shadowed => 4,
                Status::Disabled => 5,
                _ => 3,
            }] += 1;
        }
        let mut caps: Vec<String> = r
            .capabilities
            .iter()
            .take(MAX_LISTED)
            .map(|c| format!("{}:{}", c.kind, c.name))
            .collect();
        if r.capabilities.len() > MAX_LISTED {
            caps.push(format!("(+{} more)", r.capabilities.len() - MAX_LISTED));
        }
        // The list is wrapped to its column: its first line is in the row, the others below
        // it, in the same column (the builtin's `command:version, transform:echo` alone is
        // wider than the column and pushed the path out of line).
        let caps: Vec<String> = caps.iter().map(|c| printable(c).into_owned()).collect();
        let mut caps = wrap(&caps, WIDTHS[3]).into_iter();
        let first_caps = caps.next().unwrap_or_else(|| "-".to_owned());
        let name = r.name.as_deref().unwrap_or("-");
        let version = r.version.as_deref().unwrap_or("-");
        // The signature's status, when it was checked, follows the path.
        let mut path = match r.signature {
            Some(status) => format!("{} [{}]", r.path.to_string_lossy(), status.as_str()),
            None => r.path.to_string_lossy().into_owned(),
        };
        // An isolated plugin runs in a worker process of its own.
        if r.isolated {
            path.push_str(" [isolated]");
        }
        let mut text = line([
            r.status.as_str(),
            &bounded(name, 64),
            &bounded(version, 32),
            &first_caps,
            &path,
        ]);
        for more in caps {
            let indent: usize = WIDTHS[..3].iter().map(|w| w + 2).sum();
            text.push_str(&format!("\n{}{more}", " ".repeat(indent)));
        }
        if let (Some(reason), Some(message)) = (r.reason, &r.message) {
            text.push_str(&format!("\n    error[{reason}]: {}", printable(message)));
        }
        if let Some(worker) = &r.worker {
            text.push_str(&format!("\n    note: {worker}"));
        }
        // Under `strict` several checks may fail: the first is the reason above, the others
        // are listed too, so one rebuild can fix them all.
        let first = r.message.as_deref();
        for c in r.checks.iter().filter(|c| c.status == CheckStatus::Fail) {
            if first.is_some_and(|m| m.contains(c.message.as_str())) {
                continue;
            }
            text.push_str(&format!(
                "\n    error[{}]: {}",
                c.check.reason(),
                shown(&c.message)
            ));
        }
        for c in r.warnings() {
            text.push_str(&format!(
                "\n    warning[{}]: {}",
                c.check.reason(),
                shown(&c.message)
            ));
        }
        for w in &r.trust_warnings {
            text.push_str(&format!(
                "\n    warning[{}]: {}",
                w.reason,
                printable(&w.message)
            ));
        }
        writeln!(self.out.lock(), "{text}")?;
        Ok(())
    }

    /// Prints the totals.
    pub fn finish(self) -> Result<()> {
        let mut out = self.out.lock();
        let [loaded, verified, rejected, failed, shadowed, disabled] = self.counts;
        if self.counts.iter().sum::<usize>() == 0 {
            writeln!(out, "(no plugin files found)")?;
        }
        let builtins = match self.builtins {
            0 => String::new(),
            n => format!("{n} builtin, "),
        };
        let shadowed = match shadowed {
            0 => String::new(),
            n => format!(", {n} shadowed"),
        };
        let disabled = match disabled {
            0 => String::new(),
            n => format!(", {n} disabled"),
        };
        writeln!(
            out,
            "\n{builtins}{loaded} loaded, {verified} verified, {rejected} rejected, {failed} failed{shadowed}{disabled}"
        )?;
        Ok(())
    }
}

/// `items` (already escaped) as lines of at most `width` characters, `, `-separated (a line
/// that goes on ends in `,`); an item wider than the column alone is cut, ending in `…`.
/// None for no items.
fn wrap(items: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, item) in items.iter().enumerate() {
        let last = i + 1 == items.len();
        // Room for the `,` that follows every item but the last.
        let room = if last { width } else { width - 1 };
        let item = bounded(item, room);
        let len = |s: &str| s.chars().count();
        if !current.is_empty() && len(&current) + 1 + len(&item) + usize::from(!last) > width {
            lines.push(std::mem::take(&mut current));
        } else if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&item);
        if !last {
            current.push(',');
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// One table line: each cell escaped, the first four padded to their column.
fn line(cells: [&str; 5]) -> String {
    let mut s = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let cell = printable(cell);
        s.push_str(&cell);
        if let Some(width) = WIDTHS.get(i) {
            let used = cell.chars().count();
            s.push_str(&" ".repeat(width.saturating_sub(used) + 2));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn capability_lists_wrap_to_their_column() {
        let width = WIDTHS[3];
        // The builtin's list: one character too wide for one line.
        let builtin = wrap(&items(&["command:version", "transform:echo"]), width);
        assert_eq!(builtin, ["command:version,", "transform:echo"]);
        assert_eq!(wrap(&items(&["command:hello"]), width), ["command:hello"]);
        assert!(wrap(&[], width).is_empty());
        let long = "command:".to_owned() + &"x".repeat(100);
        let many = items(&[
            "command:a",
            &long,
            "transform:b",
            "transform:c",
            "(+3 more)",
        ]);
        let lines = wrap(&many, width);
        assert_eq!(lines[0], "command:a,");
        assert!(lines[1].ends_with("…,"), "{lines:?}");
        assert_eq!(&lines[2..], ["transform:b, transform:c,", "(+3 more)"]);
        for l in &lines {
            assert!(l.chars().count() <= width, "{l:?} is wider than {width}");
        }
    }

    #[test]
    fn every_row_keeps_the_path_in_its_column() {
        let head = line(["STATUS", "NAME", "VERSION", "CAPABILITIES", "PATH"]);
        let row = line([
            "builtin",
            "plugin-host",
            "0.1.0",
            "command:version,",
            "<builtin>",
        ]);
        assert_eq!(head.find("PATH"), row.find("<builtin>"));
    }
}

/// The most characters of a check's message a table shows (a plugin listing thousands of
/// crates that differ from the host's gets a message that long; `--json` has it whole).
pub(crate) const MAX_SHOWN_MESSAGE: usize = 4096;

/// A check's message as a table or a log line shows it: escaped, and cut to
/// [`MAX_SHOWN_MESSAGE`] characters.
pub(crate) fn shown(message: &str) -> String {
    host::text::shown(message, MAX_SHOWN_MESSAGE)
}

#[cfg(test)]
mod shown_tests {
    use super::*;

    #[test]
    fn a_checks_message_is_shown_escaped_and_cut() {
        let long = format!("\u{1b}[2K{}", "serde 1.0.0-x, ".repeat(100_000));
        let text = shown(&long);
        assert!(text.starts_with("\\u{1b}[2Kserde"), "{}", &text[..40]);
        assert!(!text.contains('\u{1b}'));
        assert!(
            text.chars().count() <= MAX_SHOWN_MESSAGE + 8,
            "{}",
            text.len()
        );
        assert_eq!(shown("plain"), "plain");
    }
}
