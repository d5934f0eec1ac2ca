//! `tether put`, `tether get`, `tether stat`.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use tether::{Error, ErrorKind, Host, Metadata, PutOptions, StatOptions};

use super::Context;
use super::exec::parse_octal;
use super::report::{print_json, progress_bar, rate};

#[derive(Debug, clap::Args)]
pub(crate) struct PutArgs {
    /// Inventory id, `local`, or a URL.
    host: String,
    /// The local file to send.
    local: PathBuf,
    /// Where to write it on the host.
    remote: String,
    /// Mode of the new file, octal (default: keep the replaced file's, else 0644).
    #[arg(long, value_parser = parse_octal)]
    mode: Option<u32>,
    /// Owner of the new file (name or id).
    #[arg(long)]
    owner: Option<String>,
    /// Group of the new file (name or id).
    #[arg(long)]
    group: Option<String>,
    /// Keep the local file's mode and modification time.
    #[arg(short, long)]
    preserve: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// Inventory id, `local`, or a URL.
    host: String,
    /// The file to fetch.
    remote: String,
    /// Where to write it (a directory keeps the remote name).
    local: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatArgs {
    /// Inventory id, `local`, or a URL.
    host: String,
    /// The path to describe.
    path: String,
    /// Also compute the file's SHA-512.
    #[arg(long)]
    sha512: bool,
    /// Describe a link's target instead of the link.
    #[arg(short = 'L', long)]
    follow: bool,
}

fn report_transfer(
    context: &Context,
    host: &Host,
    direction: &str,
    local: &std::path::Path,
    remote: &str,
    bytes: u64,
    started: Instant,
) -> Result<u8, Error> {
    let elapsed = started.elapsed();
    if context.json {
        print_json(&serde_json::json!({
            "operation": direction,
            "host": host.id(),
            "local": local.display().to_string(),
            "remote": remote,
            "bytes": bytes,
            "seconds": elapsed.as_secs_f64(),
        }))?;
    } else {
        println!("{bytes} bytes in {:.2} s ({})", elapsed.as_secs_f64(), rate(bytes, elapsed));
    }
    Ok(0)
}

pub(crate) async fn put(context: &Context, args: PutArgs) -> Result<u8, Error> {
    let size = std::fs::metadata(&args.local)
        .map_err(|e| Error::io("put", e).with_context(args.local.display().to_string()))?
        .len();
    let host = context.host(&args.host)?;
    let options = PutOptions { mode: args.mode, owner: args.owner, group: args.group, ..Default::default() };
    let bar = progress_bar(Some(size), context.json);
    let on_progress = |n: u64| bar.set_position(n);
    let started = Instant::now();
    let result = host.put_file(&args.local, &args.remote, &options, args.preserve, Some(&on_progress)).await;
    bar.finish_and_clear();
    let bytes = result?;
    host.close().await?;
    report_transfer(context, &host, "put", &args.local, &args.remote, bytes, started)
}

pub(crate) async fn get(context: &Context, args: GetArgs) -> Result<u8, Error> {
    let host = context.host(&args.host)?;
    let size = match host.stat(&args.remote, StatOptions { follow_links: true, sha512: false }).await? {
        Some(meta) => meta.size,
        None => return Err(Error::new(ErrorKind::NotFound, "get").with_host(host.id()).with_context(args.remote)),
    };
    let bar = progress_bar(Some(size), context.json);
    let on_progress = |n: u64| bar.set_position(n);
    let started = Instant::now();
    let result = host.get_file(&args.remote, &args.local, Some(&on_progress)).await;
    bar.finish_and_clear();
    let bytes = result?;
    host.close().await?;
    report_transfer(context, &host, "get", &args.local, &args.remote, bytes, started)
}

pub(crate) async fn stat(context: &Context, args: StatArgs) -> Result<u8, Error> {
    let host = context.host(&args.host)?;
    let options = StatOptions { follow_links: args.follow, sha512: args.sha512 };
    let meta = host
        .stat(&args.path, options)
        .await?
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "stat").with_host(host.id()).with_context(args.path.clone()))?;
    host.close().await?;
    if context.json {
        let mut value = serde_json::to_value(&meta).map_err(|e| Error::io("print", std::io::Error::other(e)))?;
        value["path"] = serde_json::Value::String(args.path);
        print_json(&value)?;
    } else {
        print_metadata(&args.path, &meta);
    }
    Ok(0)
}

fn print_metadata(path: &str, meta: &Metadata) {
    let kind = serde_json::to_value(meta.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    println!("path:   {path}");
    println!("kind:   {kind}");
    println!("size:   {}", meta.size);
    println!("mode:   {:04o}", meta.mode);
    if let Some(uid) = meta.uid {
        println!("uid:    {uid}");
    }
    if let Some(gid) = meta.gid {
        println!("gid:    {gid}");
    }
    if let Some(seconds) = meta.mtime.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        println!("mtime:  {}", seconds.as_secs());
    }
    if let Some(sha512) = &meta.sha512 {
        println!("sha512: {sha512}");
    }
}
