//! A compiled graph: constants resolved, every node bound to a native kernel, value names turned
//! into slot numbers. Running it walks the steps in the (topological) order ONNX requires.

use std::collections::HashMap;

use super::ops::{self, Kernel};
use super::proto::{type_proto, ModelProto, ValueInfoProto};
use super::value::{ElementType, Tensor, Value};
use super::{tensor_from_proto, RuntimeError};

/// What a graph input or output holds, from its declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// A tensor; `None` in the shape marks a dimension the model leaves open (usually the batch).
    Tensor {
        element: ElementType,
        shape: Vec<Option<usize>>,
    },
    /// ZipMap's sequence of {label: probability} maps.
    Maps,
}

#[derive(Debug, Clone)]
pub struct GraphInput {
    pub name: String,
    pub element: ElementType,
    pub shape: Vec<Option<usize>>,
}

#[derive(Debug, Clone)]
pub struct GraphOutput {
    pub name: String,
    pub kind: ValueKind,
}

pub(crate) struct Step {
    pub(crate) kernel: Box<dyn Kernel>,
    pub(crate) inputs: Vec<usize>,
    pub(crate) outputs: Vec<Option<usize>>,
}

pub struct Graph {
    inputs: Vec<GraphInput>,
    input_slots: Vec<usize>,
    outputs: Vec<GraphOutput>,
    output_slots: Vec<usize>,
    constants: Vec<Option<Value>>,
    steps: Vec<Step>,
    operators: Vec<String>,
}

pub(crate) fn declared_kind(info: &ValueInfoProto) -> Result<ValueKind, RuntimeError> {
    match info.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => {
            let element = ElementType::from_onnx(t.elem_type).ok_or_else(|| {
                RuntimeError::Model(format!(
                    "`{}` has unsupported element type {}",
                    info.name, t.elem_type
                ))
            })?;
            let shape = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(super::proto::tensor_shape_proto::dimension::Value::DimValue(
                                v,
                            )) if v > 0 => Some(v as usize),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(ValueKind::Tensor { element, shape })
        }
        Some(type_proto::Value::SequenceType(_)) => Ok(ValueKind::Maps),
        _ => Err(RuntimeError::Model(format!(
            "`{}` has a type the runtime cannot hold",
            info.name
        ))),
    }
}

impl Graph {
    /// Decodes and compiles an ONNX model file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RuntimeError> {
        let model = <ModelProto as prost::Message>::decode(bytes)
            .map_err(|e| RuntimeError::Model(format!("not an ONNX model file: {e}")))?;
        Self::compile(&model)
    }

    /// The inputs and outputs a model declares, without compiling its nodes.
    pub fn declared_io(
        model: &ModelProto,
    ) -> Result<(Vec<GraphInput>, Vec<GraphOutput>), RuntimeError> {
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| RuntimeError::Model("the model has no graph".into()))?;
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let mut inputs = Vec::new();
        for info in graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
        {
            let ValueKind::Tensor { element, shape } = declared_kind(info)? else {
                return Err(RuntimeError::Model(format!(
                    "input `{}` must be a tensor",
                    info.name
                )));
            };
            inputs.push(GraphInput {
                name: info.name.clone(),
                element,
                shape,
            });
        }
        let outputs = graph
            .output
            .iter()
            .map(|info| {
                Ok(GraphOutput {
                    name: info.name.clone(),
                    kind: declared_kind(info)?,
                })
            })
            .collect::<Result<_, RuntimeError>>()?;
        Ok((inputs, outputs))
    }

    pub fn compile(model: &ModelProto) -> Result<Self, RuntimeError> {
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| RuntimeError::Model("the model has no graph".into()))?;
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut constants: Vec<Option<Value>> = Vec::new();
        let define =
            |name: &str, slots: &mut HashMap<String, usize>, constants: &mut Vec<Option<Value>>| {
                let slot = constants.len();
                slots.insert(name.to_string(), slot);
                constants.push(None);
                slot
            };

        for init in &graph.initializer {
            let slot = define(&init.name, &mut slots, &mut constants);
            constants[slot] = Some(Value::Tensor(tensor_from_proto(init)?));
        }
        // The declared interface, read once (the same function `Model` uses for onnxruntime graphs).
        let (inputs, outputs) = Self::declared_io(model)?;
        let input_slots = inputs
            .iter()
            .map(|i| define(&i.name, &mut slots, &mut constants))
            .collect();

        let mut steps = Vec::new();
        let mut operators = Vec::new();
        for node in &graph.node {
            let domain = if node.domain.is_empty() {
                "ai.onnx"
            } else {
                node.domain.as_str()
            };
            let label = format!("{domain}:{}", node.op_type);
            if !operators.contains(&label) {
                operators.push(label.clone());
            }
            if node.op_type == "Constant" && domain == "ai.onnx" {
                let value = node
                    .attribute
                    .iter()
                    .find(|a| a.name == "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| {
                        RuntimeError::Model("Constant without a `value` tensor".into())
                    })?;
                let out = node
                    .output
                    .first()
                    .ok_or_else(|| RuntimeError::Model("Constant without output".into()))?;
                let slot = define(out, &mut slots, &mut constants);
                constants[slot] = Some(Value::Tensor(tensor_from_proto(value)?));
                continue;
            }
            let kernel = ops::compile(domain, node)?;
            let mut step_inputs = Vec::new();
            let used = node
                .input
                .iter()
                .rposition(|n| !n.is_empty())
                .map_or(0, |p| p + 1);
            for name in &node.input[..used] {
                let slot = slots.get(name).copied().ok_or_else(|| {
                    RuntimeError::Model(format!(
                        "{label} reads `{name}` before anything defines it"
                    ))
                })?;
                step_inputs.push(slot);
            }
            let outputs = node
                .output
                .iter()
                .map(|name| (!name.is_empty()).then(|| define(name, &mut slots, &mut constants)))
                .collect();
            steps.push(Step {
                kernel,
                inputs: step_inputs,
                outputs,
            });
        }

        let output_slots = outputs
            .iter()
            .map(|o| {
                slots.get(&o.name).copied().ok_or_else(|| {
                    RuntimeError::Model(format!("output `{}` is never computed", o.name))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            inputs,
            input_slots,
            outputs,
            output_slots,
            constants,
            steps,
            operators,
        })
    }

    pub fn inputs(&self) -> &[GraphInput] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[GraphOutput] {
        &self.outputs
    }

    /// The distinct operators of the graph, as `domain:op_type`.
    pub fn operators(&self) -> &[String] {
        &self.operators
    }

    /// Tree ensembles in the graph, in node order (for explanations).
    pub fn tree_ensembles(&self) -> Vec<&super::TreeEnsemble> {
        self.steps
            .iter()
            .filter_map(|s| s.kernel.as_tree_ensemble())
            .collect()
    }

    pub(crate) fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub(crate) fn input_slot(&self, input: usize) -> usize {
        self.input_slots[input]
    }

    /// Runs `chain`, steps of one input and one used output each in which every step reads the
    /// previous one's output (the first reads the graph's input), and returns the last output.
    pub(crate) fn run_chain(&self, chain: &[usize], batch: Tensor) -> Result<Tensor, RuntimeError> {
        let mut value = Value::Tensor(batch);
        for i in chain {
            let step = &self.steps[*i];
            let mut args: Vec<&Value> = Vec::with_capacity(step.inputs.len());
            args.push(&value);
            for s in &step.inputs[1..] {
                args.push(self.constants[*s].as_ref().ok_or_else(|| {
                    RuntimeError::Model("a step before the estimator reads a computed value".into())
                })?);
            }
            let out = step.kernel.run(&args)?.into_iter().next().ok_or_else(|| {
                RuntimeError::Model("a step before the estimator has no output".into())
            })?;
            value = out;
        }
        match value {
            Value::Tensor(t) => Ok(t),
            Value::Maps(_) => Err(RuntimeError::Type(
                "the estimator's input is not a tensor".into(),
            )),
        }
    }

    /// Runs the graph on tensors given in the order of [`Graph::inputs`].
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Value>, RuntimeError> {
        if inputs.len() != self.inputs.len() {
            return Err(RuntimeError::Input(format!(
                "the model takes {} inputs, got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let mut owned: Vec<Option<Value>> = vec![None; self.constants.len()];
        for (slot, tensor) in self.input_slots.iter().zip(inputs) {
            owned[*slot] = Some(Value::Tensor(tensor));
        }
        for step in &self.steps {
            let args: Vec<&Value> = step
                .inputs
                .iter()
                .map(|s| {
                    owned[*s]
                        .as_ref()
                        .or(self.constants[*s].as_ref())
                        .ok_or_else(|| {
                            RuntimeError::Model("a value was read before it was computed".into())
                        })
                })
                .collect::<Result<_, _>>()?;
            let results = step.kernel.run(&args)?;
            for (slot, value) in step.outputs.iter().zip(results) {
                if let Some(slot) = slot {
                    owned[*slot] = Some(value);
                }
            }
        }
        self.output_slots
            .iter()
            .map(|s| {
                owned[*s]
                    .take()
                    .or_else(|| self.constants[*s].clone())
                    .ok_or_else(|| RuntimeError::Model("an output was not computed".into()))
            })
            .collect()
    }
}
