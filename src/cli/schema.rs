//! `tether schema hosts`: the JSON Schema of the inventory, for editors.

use clap::{Args, ValueEnum};
use tether::{Error, Registry};

use super::report::print_json;

#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// Which file to describe.
    #[arg(value_enum)]
    kind: SchemaKind,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemaKind {
    /// The inventory (`hosts.json`), with the options tables of this build's transports.
    Hosts,
}

/// Takes the registry directly rather than from the lab: the schema depends
/// only on what is compiled in, not on any inventory or settings file.
pub(crate) fn run(args: &SchemaArgs) -> Result<u8, Error> {
    let schema = match args.kind {
        SchemaKind::Hosts => tether::options::hosts_schema(Registry::global()),
    };
    print_json(&schema)?;
    Ok(0)
}
