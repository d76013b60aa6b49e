//! A servable model: the native graph when every operator is ours, else onnxruntime, else a
//! refusal that names the operator neither can run.

use super::graph::{Graph, GraphInput, GraphOutput};
use super::onnxruntime::OrtModel;
use super::proto::ModelProto;
use super::value::{Tensor, Value};
use super::RuntimeError;

pub enum Engine {
    Native(Graph),
    Onnxruntime(OrtModel),
}

pub struct Model {
    engine: Engine,
    inputs: Vec<GraphInput>,
    outputs: Vec<GraphOutput>,
}

impl Model {
    /// Loads an ONNX file. An operator outside the native set sends the model to onnxruntime; if
    /// that library is missing or refuses the graph, the error names the operator and the reason.
    pub fn load(bytes: &[u8]) -> Result<Self, RuntimeError> {
        let proto = <ModelProto as prost::Message>::decode(bytes)
            .map_err(|e| RuntimeError::Model(format!("not an ONNX model file: {e}")))?;
        let (inputs, outputs) = Graph::declared_io(&proto)?;
        let engine = match Graph::compile(&proto) {
            Ok(graph) => Engine::Native(graph),
            Err(RuntimeError::Unsupported { domain, op }) => match OrtModel::load(bytes) {
                Ok(session) => Engine::Onnxruntime(session),
                Err(why) => {
                    return Err(RuntimeError::Model(format!(
                        "operator {domain}:{op} is not in the native runtime and onnxruntime cannot run it: {why}"
                    )))
                }
            },
            Err(other) => return Err(other),
        };
        Ok(Self {
            engine,
            inputs,
            outputs,
        })
    }

    pub fn inputs(&self) -> &[GraphInput] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[GraphOutput] {
        &self.outputs
    }

    /// Whether missing values (NaN) are meaningful inputs: the graph imputes them or its trees
    /// route them explicitly. Otherwise a NaN in a request is refused before inference.
    pub fn accepts_missing_values(&self) -> bool {
        match &self.engine {
            Engine::Native(graph) => {
                graph
                    .operators()
                    .iter()
                    .any(|op| op == "ai.onnx.ml:Imputer")
                    || graph
                        .tree_ensembles()
                        .iter()
                        .any(|t| t.nodes().iter().any(|n| n.missing_goes_true))
            }
            Engine::Onnxruntime(_) => false,
        }
    }

    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.name.clone()).collect()
    }

    /// `native` or `onnxruntime`.
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Native(_) => "native",
            Engine::Onnxruntime(_) => "onnxruntime",
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The model's estimator and the column-wise steps before it, for explanations (`None` for
    /// graphs onnxruntime runs or that mix columns before their estimator).
    pub fn estimator(&self) -> Option<super::Estimator<'_>> {
        match &self.engine {
            Engine::Native(graph) => graph.estimator(),
            Engine::Onnxruntime(_) => None,
        }
    }

    /// The estimator's input for a batch: `steps` from [`Model::estimator`] run on it.
    pub fn estimator_input(
        &self,
        steps: &super::ColumnSteps,
        batch: Tensor,
    ) -> Result<Tensor, RuntimeError> {
        match &self.engine {
            Engine::Native(graph) => graph.estimator_input(steps, batch),
            Engine::Onnxruntime(_) => Err(RuntimeError::Model(
                "a graph onnxruntime runs has no estimator steps".into(),
            )),
        }
    }

    /// Runs on tensors in the order of [`Model::inputs`]; outputs come in the order of [`Model::outputs`].
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Value>, RuntimeError> {
        match &self.engine {
            Engine::Native(graph) => graph.run(inputs),
            Engine::Onnxruntime(session) => session.run(&self.inputs, inputs),
        }
    }
}
