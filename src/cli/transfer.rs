//! `tether put`, `tether get`, `tether stat`.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use tether::{Error, ErrorKind, FileKind, Host, Metadata, PutOptions, StatOptions, TreeOptions, TreeSummary};

use super::Context;
use super::exec::parse_octal;
use super::report::{print_json, progress_bar, rate};

#[derive(Debug, clap::Args)]
pub(crate) struct PutArgs {
    /// Inventory id, `local`, or a URL.
    host: String,
    /// The local file (or, with -r, directory) to send.
    local: PathBuf,
    /// Where to write it on the host (with -r: an existing directory receives it under its own name).
    /// Any bytes the host's filesystem takes, not only UTF-8.
    remote: PathBuf,
    /// Mode of the new file, octal (default: keep the replaced file's, else 0644).
    #[arg(long, value_parser = parse_octal, conflicts_with = "recursive")]
    mode: Option<u32>,
    /// Owner of the new file (name or id).
    #[arg(long, conflicts_with = "recursive")]
    owner: Option<String>,
    /// Group of the new file (name or id).
    #[arg(long, conflicts_with = "recursive")]
    group: Option<String>,
    /// Keep the local file's mode and modification time.
    #[arg(short, long)]
    preserve: bool,
    /// Copy a directory and everything in it, like `scp -r` (links and special files are skipped).
    #[arg(short, long)]
    recursive: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GetArgs {
    /// Inventory id, `local`, or a URL.
    host: String,
    /// The file (or, with -r, directory) to fetch.
    remote: PathBuf,
    /// Where to write it (a directory keeps the remote name).
    local: PathBuf,
    /// Copy a directory and everything in it, like `scp -r` (links and special files are skipped).
    #[arg(short, long)]
    recursive: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatArgs {
    /// Inventory id, `local`, or a URL.
    host: String,
    /// The path to describe.
    path: PathBuf,
    /// Also compute the file's SHA-512.
    #[arg(long)]
    sha512: bool,
    /// Describe a link's target instead of the link.
    #[arg(short = 'L', long)]
    follow: bool,
}

/// What a transfer moved: one file's bytes, or a tree.
enum Moved {
    File(u64),
    Tree(TreeSummary),
}

/// The closing line (or `--json` object) of a put or get.
fn report(
    context: &Context,
    host: &Host,
    direction: &str,
    (local, remote): (&Path, &Path),
    moved: Moved,
    started: Instant,
) -> Result<u8, Error> {
    let elapsed = started.elapsed();
    let bytes = match &moved {
        Moved::File(bytes) => *bytes,
        Moved::Tree(summary) => summary.bytes,
    };
    if context.json {
        let mut value = serde_json::json!({
            "operation": direction,
            "host": host.id(),
            "local": local.display().to_string(),
            "remote": remote.display().to_string(),
            "bytes": bytes,
            "seconds": elapsed.as_secs_f64(),
        });
        if let Moved::Tree(summary) = &moved {
            value["recursive"] = true.into();
            value["files"] = summary.files.into();
            value["directories"] = summary.directories.into();
            value["skipped"] = summary.skipped.into();
        }
        print_json(&value)?;
        return Ok(0);
    }
    let timing = format!("{bytes} bytes in {:.2} s ({})", elapsed.as_secs_f64(), rate(bytes, elapsed));
    match moved {
        Moved::File(_) => println!("{timing}"),
        Moved::Tree(summary) => {
            let skipped = match summary.skipped {
                0 => String::new(),
                n => format!(", {n} skipped (links and special files)"),
            };
            println!("{} files, {} directories, {timing}{skipped}", summary.files, summary.directories);
        }
    }
    Ok(0)
}

pub(crate) async fn put(context: &Context, args: PutArgs) -> Result<u8, Error> {
    let meta = std::fs::metadata(&args.local)
        .map_err(|e| Error::io("put", e).with_context(args.local.display().to_string()))?;
    if meta.is_dir() {
        if !args.recursive {
            return Err(is_a_directory("put", &args.local));
        }
        return put_tree(context, args).await;
    }
    let size = meta.len();
    let host = context.host(&args.host)?;
    let options = PutOptions { mode: args.mode, owner: args.owner, group: args.group, ..Default::default() };
    let bar = progress_bar(Some(size), context.json);
    let on_progress = |n: u64| bar.set_position(n);
    let started = Instant::now();
    let result = host.put_file(&args.local, &args.remote, &options, args.preserve, Some(&on_progress)).await;
    bar.finish_and_clear();
    let bytes = result?;
    host.close().await?;
    report(context, &host, "put", (&args.local, &args.remote), Moved::File(bytes), started)
}

pub(crate) async fn get(context: &Context, args: GetArgs) -> Result<u8, Error> {
    let host = context.host(&args.host)?;
    let size = match host.stat(&args.remote, StatOptions { follow_links: true, sha512: false }).await? {
        Some(meta) if meta.kind == FileKind::Dir && args.recursive => return get_tree(context, &host, args).await,
        Some(meta) if meta.kind == FileKind::Dir => {
            return Err(is_a_directory("get", &args.remote).with_host(host.id()));
        }
        Some(meta) => meta.size,
        None => {
            let error = Error::new(ErrorKind::NotFound, "get").with_host(host.id());
            return Err(error.with_context(args.remote.display().to_string()));
        }
    };
    let bar = progress_bar(Some(size), context.json);
    let on_progress = |n: u64| bar.set_position(n);
    let started = Instant::now();
    let result = host.get_file(&args.remote, &args.local, Some(&on_progress)).await;
    bar.finish_and_clear();
    let bytes = result?;
    host.close().await?;
    report(context, &host, "get", (&args.local, &args.remote), Moved::File(bytes), started)
}

fn is_a_directory(operation: &str, path: &Path) -> Error {
    Error::new(ErrorKind::InvalidInput, operation).with_context(format!("{} is a directory: use -r", path.display()))
}

/// The bytes a `put -r` will send, for the progress bar: the regular files'
/// sizes, links not followed, as the transfer itself does. Best effort: what
/// cannot be read here fails the transfer itself, with a proper error.
fn local_tree_size(root: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() && depth < tether::MAX_TREE_DEPTH {
                pending.push((entry.path(), depth + 1));
            } else if kind.is_file() {
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

async fn put_tree(context: &Context, args: PutArgs) -> Result<u8, Error> {
    let total = local_tree_size(&args.local);
    let host = context.host(&args.host)?;
    let files = host.files().await.map_err(|e| e.with_host(host.id()))?;
    let bar = progress_bar(Some(total), context.json);
    let on_progress = |n: u64| bar.set_position(n);
    let started = Instant::now();
    let options = TreeOptions { preserve: args.preserve };
    let result = tether::put_tree(files.as_ref(), &args.local, &args.remote, &options, Some(&on_progress)).await;
    bar.finish_and_clear();
    let summary = result.map_err(|e| e.with_host(host.id()))?;
    host.close().await?;
    report(context, &host, "put", (&args.local, &args.remote), Moved::Tree(summary), started)
}

async fn get_tree(context: &Context, host: &Host, args: GetArgs) -> Result<u8, Error> {
    let files = host.files().await.map_err(|e| e.with_host(host.id()))?;
    // The size of a remote tree would take a walk of its own: count bytes only.
    let bar = progress_bar(None, context.json);
    let on_progress = |n: u64| bar.set_position(n);
    let started = Instant::now();
    let result = tether::get_tree(files.as_ref(), &args.remote, &args.local, Some(&on_progress)).await;
    bar.finish_and_clear();
    let summary = result.map_err(|e| e.with_host(host.id()))?;
    host.close().await?;
    report(context, host, "get", (&args.local, &args.remote), Moved::Tree(summary), started)
}

pub(crate) async fn stat(context: &Context, args: StatArgs) -> Result<u8, Error> {
    let host = context.host(&args.host)?;
    let options = StatOptions { follow_links: args.follow, sha512: args.sha512 };
    let meta = host.stat(&args.path, options).await?.ok_or_else(|| {
        let error = Error::new(ErrorKind::NotFound, "stat").with_host(host.id());
        error.with_context(args.path.display().to_string())
    })?;
    host.close().await?;
    if context.json {
        let mut value = serde_json::to_value(&meta).map_err(|e| Error::io("print", std::io::Error::other(e)))?;
        value["path"] = serde_json::Value::String(args.path.display().to_string());
        print_json(&value)?;
    } else {
        print_metadata(&args.path, &meta);
    }
    Ok(0)
}

fn print_metadata(path: &Path, meta: &Metadata) {
    let kind = serde_json::to_value(meta.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    println!("path:   {}", path.display());
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
