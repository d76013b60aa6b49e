//! Graphs outside the native operator set run through onnxruntime, loaded at run time from the
//! shared library that ships in the `onnxruntime` PyPI wheel (nothing is downloaded or linked at
//! build time). Found through `ORT_DYLIB_PATH`, else the active Python environment.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{DynValue, TensorElementType, ValueType};

use super::value::{Tensor, TensorData, Value};
use super::RuntimeError;

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

fn library_in(site_packages: &Path) -> Option<PathBuf> {
    let capi = site_packages.join("onnxruntime").join("capi");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&capi)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    found.sort();
    found.pop()
}

fn python_site_packages(python: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Where the onnxruntime shared library is, or why it was not found.
pub fn locate_library() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("ORT_DYLIB_PATH={} is not a file", path.display()))
        };
    }
    let mut pythons = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        pythons.push(PathBuf::from(venv).join("bin/python"));
    }
    pythons.push(PathBuf::from(".venv/bin/python"));
    pythons.push(PathBuf::from("python3"));
    for python in pythons {
        if let Some(lib) = python_site_packages(&python).and_then(|sp| library_in(&sp)) {
            return Ok(lib);
        }
    }
    Err("the onnxruntime library was not found: `pip install onnxruntime` in the active Python environment, or set ORT_DYLIB_PATH to libonnxruntime.so".into())
}

fn environment() -> Result<&'static Environment, String> {
    ENVIRONMENT
        .get_or_init(|| {
            let lib = locate_library()?;
            ort::init_from(&lib)
                .map_err(|e| format!("cannot load {}: {e}", lib.display()))?
                .with_name("mltrail")
                .build()
                .map_err(|e| format!("onnxruntime environment: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A model session in onnxruntime. Runs are serialized because onnxruntime's Rust binding needs
/// exclusive access to run; each run still uses onnxruntime's own thread pool.
pub struct OrtModel {
    session: Mutex<Session>,
    output_names: Vec<String>,
}

impl OrtModel {
    pub fn load(bytes: &[u8]) -> Result<Self, String> {
        let env = environment()?;
        let session = Session::builder(env)
            .and_then(|mut b| b.commit_from_memory(bytes))
            .map_err(|e| format!("onnxruntime refused the model: {e}"))?;
        let output_names = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        Ok(Self {
            session: Mutex::new(session),
            output_names,
        })
    }

    pub fn run(
        &self,
        declared: &[super::graph::GraphInput],
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Value>, RuntimeError> {
        let failed = |e: ort::Error| RuntimeError::Input(format!("onnxruntime: {e}"));
        let mut values: Vec<(
            std::borrow::Cow<'static, str>,
            ort::session::SessionInputValue<'static>,
        )> = Vec::new();
        for (name, t) in declared.iter().map(|d| &d.name).zip(inputs) {
            let shape: Vec<i64> = t.shape.iter().map(|d| *d as i64).collect();
            let value: DynValue = match t.data {
                TensorData::Float(v) => ort::value::Tensor::from_array((shape, v))
                    .map_err(failed)?
                    .into_dyn(),
                TensorData::Double(v) => ort::value::Tensor::from_array((shape, v))
                    .map_err(failed)?
                    .into_dyn(),
                TensorData::Int64(v) => ort::value::Tensor::from_array((shape, v))
                    .map_err(failed)?
                    .into_dyn(),
                TensorData::Int32(v) => ort::value::Tensor::from_array((shape, v))
                    .map_err(failed)?
                    .into_dyn(),
                TensorData::Bool(v) => ort::value::Tensor::from_array((shape, v))
                    .map_err(failed)?
                    .into_dyn(),
                TensorData::String(v) => {
                    ort::value::Tensor::from_string_array((shape, v.as_slice()))
                        .map_err(failed)?
                        .into_dyn()
                }
            };
            values.push((name.clone().into(), value.into()));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| RuntimeError::Model("onnxruntime session poisoned".into()))?;
        let outputs = session.run(values).map_err(failed)?;
        let mut result = Vec::with_capacity(self.output_names.len());
        for name in &self.output_names {
            let value = &outputs[name.as_str()];
            let ValueType::Tensor { ty, .. } = value.dtype() else {
                return Err(RuntimeError::Type(format!(
                    "onnxruntime output `{name}` is not a tensor (export the model without ZipMap)"
                )));
            };
            let tensor = match ty {
                TensorElementType::Float32 => {
                    let (s, d) = value.try_extract_tensor::<f32>().map_err(failed)?;
                    Tensor::new(
                        s.iter().map(|x| *x as usize).collect(),
                        TensorData::Float(d.to_vec()),
                    )?
                }
                TensorElementType::Float64 => {
                    let (s, d) = value.try_extract_tensor::<f64>().map_err(failed)?;
                    Tensor::new(
                        s.iter().map(|x| *x as usize).collect(),
                        TensorData::Double(d.to_vec()),
                    )?
                }
                TensorElementType::Int64 => {
                    let (s, d) = value.try_extract_tensor::<i64>().map_err(failed)?;
                    Tensor::new(
                        s.iter().map(|x| *x as usize).collect(),
                        TensorData::Int64(d.to_vec()),
                    )?
                }
                TensorElementType::Int32 => {
                    let (s, d) = value.try_extract_tensor::<i32>().map_err(failed)?;
                    Tensor::new(
                        s.iter().map(|x| *x as usize).collect(),
                        TensorData::Int32(d.to_vec()),
                    )?
                }
                TensorElementType::Bool => {
                    let (s, d) = value.try_extract_tensor::<bool>().map_err(failed)?;
                    Tensor::new(
                        s.iter().map(|x| *x as usize).collect(),
                        TensorData::Bool(d.to_vec()),
                    )?
                }
                TensorElementType::String => {
                    let (s, d) = value.try_extract_strings().map_err(failed)?;
                    Tensor::new(
                        s.iter().map(|x| *x as usize).collect(),
                        TensorData::String(d),
                    )?
                }
                other => {
                    return Err(RuntimeError::Type(format!(
                        "onnxruntime output `{name}` has element type {other:?}"
                    )))
                }
            };
            result.push(Value::Tensor(tensor));
        }
        Ok(result)
    }
}
