//! proptest strategies for the few fields `proptest-derive` cannot derive.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

/// A map with a handful of short keys.
pub fn small_map<T: std::fmt::Debug>(
    values: impl Strategy<Value = T>,
) -> impl Strategy<Value = BTreeMap<String, T>> {
    proptest::collection::btree_map("[a-z]{1,8}", values, 0..4)
}

/// Arbitrary JSON without floats (floats round-trip, but `1.0` and `1`
/// compare unequal as `Value`s, which would make the test about serde_json).
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
