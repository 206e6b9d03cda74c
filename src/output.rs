//! Human and JSON output.

use std::io::Write;

use anyhow::Result;
use host::{Host, PluginReport, Provenance, Status};
use serde::Serialize;

/// Prints a provenance record.
pub fn provenance(p: &Provenance, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, p)?;
        writeln!(out)?;
        return Ok(());
    }
    let r = &p.rustc;
    writeln!(out, "{} {}", p.name, p.version)?;
    writeln!(out, "  target        {}", p.target)?;
    let llvm = r
        .llvm
        .as_deref()
        .map(|v| format!(", LLVM {v}"))
        .unwrap_or_default();
    writeln!(
        out,
        "  rustc         {} {}, {}{llvm}",
        r.short(),
        r.commit_date,
        r.channel
    )?;
    writeln!(
        out,
        "  profile       {} (opt-level {}, debug-assertions {}), panic = {}",
        p.profile.name,
        p.profile.opt_level,
        if p.profile.debug_assertions {
            "on"
        } else {
            "off"
        },
        p.profile.panic
    )?;
    writeln!(out, "  plugin-api    {}", p.plugin_api)?;
    writeln!(out, "  abi_stable    {}", p.abi_stable)?;
    let features = if p.features.is_empty() {
        "(none)".to_owned()
    } else {
        p.features.join(", ")
    };
    writeln!(out, "  features      {features}")?;
    writeln!(
        out,
        "  dependencies  {} crates linked",
        p.dependencies.len()
    )?;
    for d in &p.dependencies {
        writeln!(out, "    {d}")?;
    }
    Ok(())
}

/// Prints scan or check results: a table, or the documented JSON shape.
pub fn reports(host: &Host, reports: &[PluginReport], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let id = host.identity();
    if json {
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
        let mut out = std::io::BufWriter::new(out);
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    let p = &id.provenance;
    writeln!(
        out,
        "host: {} {} (rustc {}, {}, panic = {}, plugin-api {}); policy: {}",
        id.name,
        id.version,
        p.rustc.short(),
        p.target,
        p.profile.panic,
        p.plugin_api,
        host.policy().name()
    )?;
    if reports.is_empty() {
        writeln!(out, "no plugin files found")?;
        return Ok(());
    }
    let rows: Vec<[String; 5]> = reports
        .iter()
        .map(|r| {
            let caps: Vec<String> = r
                .capabilities
                .iter()
                .map(|c| format!("{}:{}", c.kind, c.name))
                .collect();
            [
                r.status.as_str().to_owned(),
                r.name.clone().unwrap_or_else(|| "-".into()),
                r.version.clone().unwrap_or_else(|| "-".into()),
                if caps.is_empty() {
                    "-".into()
                } else {
                    caps.join(", ")
                },
                r.path.display().to_string(),
            ]
        })
        .collect();
    let header = ["STATUS", "NAME", "VERSION", "CAPABILITIES", "PATH"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s
    };
    writeln!(out)?;
    writeln!(out, "{}", line(header))?;
    for (r, row) in reports.iter().zip(&rows) {
        writeln!(
            out,
            "{}",
            line([&row[0], &row[1], &row[2], &row[3], &row[4]])
        )?;
        if let (Some(reason), Some(message)) = (r.reason, &r.message) {
            writeln!(out, "    error[{reason}]: {message}")?;
        }
        for c in r.warnings() {
            writeln!(out, "    warning[{}]: {}", c.check.reason(), c.message)?;
        }
    }
    let count = |s: Status| reports.iter().filter(|r| r.status == s).count();
    writeln!(
        out,
        "\n{} loaded, {} verified, {} rejected, {} failed",
        count(Status::Loaded),
        count(Status::Verified),
        count(Status::Rejected),
        count(Status::Failed)
    )?;
    Ok(())
}
