//! An [`Ensemble`] as the ONNX graph onnxmltools would write for it: one `TreeEnsembleClassifier`
//! (outputs `label` and `probabilities`) or `TreeEnsembleRegressor` (output `variable`) over one
//! input tensor, ai.onnx.ml opset 3 with every real number as a double tensor.

use prost::Message;

use super::{Comparison, Ensemble, Node, Output};
use crate::runtime::proto::{
    data_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

const INTS: i32 = 7;
const STRINGS: i32 = 8;
const TENSOR: i32 = 4;
const STRING: i32 = 3;
const INT: i32 = 2;

fn ints(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: values,
        r#type: INTS,
        ..Default::default()
    }
}

fn strings(name: &str, values: Vec<&str>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        strings: values.into_iter().map(|s| s.as_bytes().to_vec()).collect(),
        r#type: STRINGS,
        ..Default::default()
    }
}

fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: value.as_bytes().to_vec(),
        r#type: STRING,
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: value,
        r#type: INT,
        ..Default::default()
    }
}

/// `<name>_as_tensor`: doubles, exact.
fn doubles(name: &str, values: Vec<f64>) -> AttributeProto {
    AttributeProto {
        name: format!("{name}_as_tensor"),
        t: Some(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::DOUBLE,
            double_data: values,
            ..Default::default()
        }),
        r#type: TENSOR,
        ..Default::default()
    }
}

fn tensor_info(name: &str, elem_type: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value as Dim, Dimension};
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(n) => Dim::DimValue(*n),
                                None => Dim::DimParam("N".into()),
                            }),
                        })
                        .collect(),
                }),
            })),
        }),
    }
}

pub fn encode(e: &Ensemble) -> Vec<u8> {
    let mut tree_ids = Vec::new();
    let mut node_ids = Vec::new();
    let mut feature_ids = Vec::new();
    let mut modes = Vec::new();
    let mut values = Vec::new();
    let mut true_ids = Vec::new();
    let mut false_ids = Vec::new();
    let mut missing = Vec::new();
    let mut covers = Vec::new();
    let (mut leaf_trees, mut leaf_nodes, mut leaf_targets, mut leaf_weights) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let branch = match e.comparison {
        Comparison::Less => "BRANCH_LT",
        Comparison::LessOrEqual => "BRANCH_LEQ",
    };
    for (t, tree) in e.trees.iter().enumerate() {
        for (n, node) in tree.nodes.iter().enumerate() {
            tree_ids.push(t as i64);
            node_ids.push(n as i64);
            match node {
                Node::Split {
                    feature,
                    threshold,
                    missing_left,
                    left,
                    right,
                    cover,
                } => {
                    feature_ids.push(*feature as i64);
                    modes.push(branch);
                    values.push(*threshold);
                    true_ids.push(*left as i64);
                    false_ids.push(*right as i64);
                    missing.push(i64::from(*missing_left));
                    covers.push(*cover);
                }
                Node::Leaf { value, cover } => {
                    feature_ids.push(0);
                    modes.push("LEAF");
                    values.push(0.0);
                    true_ids.push(0);
                    false_ids.push(0);
                    missing.push(0);
                    covers.push(*cover);
                    leaf_trees.push(t as i64);
                    leaf_nodes.push(n as i64);
                    leaf_targets.push(tree.class as i64);
                    leaf_weights.push(*value);
                }
            }
        }
    }
    let mut attributes = vec![
        ints("nodes_treeids", tree_ids),
        ints("nodes_nodeids", node_ids),
        ints("nodes_featureids", feature_ids),
        strings("nodes_modes", modes),
        doubles("nodes_values", values),
        ints("nodes_truenodeids", true_ids),
        ints("nodes_falsenodeids", false_ids),
        ints("nodes_missing_value_tracks_true", missing),
        doubles("nodes_hitrates", covers),
    ];
    let (op, outputs) = match &e.output {
        Output::Regression { base } => {
            attributes.extend([
                ints("target_treeids", leaf_trees),
                ints("target_nodeids", leaf_nodes),
                ints("target_ids", leaf_targets),
                doubles("target_weights", leaf_weights),
                int("n_targets", 1),
                string("aggregate_function", "SUM"),
                string("post_transform", "NONE"),
                doubles("base_values", vec![*base]),
            ]);
            (
                "TreeEnsembleRegressor",
                vec![tensor_info("variable", number_type(e), &[None, Some(1)])],
            )
        }
        Output::Binary { base } => {
            attributes.extend([
                ints("class_treeids", leaf_trees),
                ints("class_nodeids", leaf_nodes),
                // onnxruntime's binary case: one score for class 1, p = sigmoid(score).
                ints("class_ids", vec![0; leaf_targets.len()]),
                doubles("class_weights", leaf_weights),
                ints("classlabels_int64s", labels(e, 2)),
                string("post_transform", "LOGISTIC"),
                doubles("base_values", vec![*base]),
            ]);
            classifier_outputs(2, number_type(e))
        }
        Output::Multiclass { base } => {
            attributes.extend([
                ints("class_treeids", leaf_trees),
                ints("class_nodeids", leaf_nodes),
                ints("class_ids", leaf_targets),
                doubles("class_weights", leaf_weights),
                ints("classlabels_int64s", labels(e, base.len())),
                string("post_transform", "SOFTMAX"),
                doubles("base_values", base.clone()),
            ]);
            classifier_outputs(base.len(), number_type(e))
        }
    };
    let output_names = outputs.iter().map(|o| o.name.clone()).collect();
    let input_type = number_type(e);
    let model = ModelProto {
        ir_version: 8,
        producer_name: "mltrail".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: vec!["input".into()],
                output: output_names,
                name: "trees".into(),
                op_type: op.into(),
                attribute: attributes,
                domain: "ai.onnx.ml".into(),
            }],
            name: "mltrail_native_trees".into(),
            initializer: Vec::new(),
            input: vec![tensor_info(
                "input",
                input_type,
                &[None, Some(e.features as i64)],
            )],
            output: outputs,
        }),
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            },
            OperatorSetIdProto {
                domain: "ai.onnx.ml".into(),
                version: 3,
            },
        ],
    };
    model.encode_to_vec()
}

fn labels(e: &Ensemble, classes: usize) -> Vec<i64> {
    e.labels
        .clone()
        .unwrap_or_else(|| (0..classes as i64).collect())
}

/// Outputs in the precision the library answers in: float32 for XGBoost, float64 for LightGBM.
fn number_type(e: &Ensemble) -> i32 {
    if e.float32_input {
        data_type::FLOAT
    } else {
        data_type::DOUBLE
    }
}

fn classifier_outputs(classes: usize, numbers: i32) -> (&'static str, Vec<ValueInfoProto>) {
    (
        "TreeEnsembleClassifier",
        vec![
            tensor_info("label", data_type::INT64, &[None]),
            tensor_info("probabilities", numbers, &[None, Some(classes as i64)]),
        ],
    )
}
