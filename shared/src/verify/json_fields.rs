//! Reading a few strings out of a JSON body in one pass, without building the rest.
//!
//! A scheme needs one to three fields of a delivery's body (Stripe's `id` and `type`, a
//! GitHub payload's `action`, Slack's `event.type`). Parsing the whole body into a
//! `serde_json::Value` to read them allocated a tree of every member, and its drop walked it
//! again: half the CPU of verifying a 1 KB GitHub delivery, by the profile of
//! `cargo bench --bench receiver_path`. Here the body is walked once; what is not asked for
//! is skipped (`IgnoredAny`), and only the strings asked for are kept.
//!
//! The result is what [`super::json_str`] finds in the parsed document: a string at the
//! path, or nothing when the path is missing or leads to anything else; a key given twice
//! counts as its last value, as in a parsed object. One difference: skipped values are
//! checked for syntax only, so a number too large for an `f64`, or invalid UTF-8 inside a
//! string, in a member nobody reads no longer makes the body "not JSON".

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The strings at `paths` (dot-separated: `event.type`) of the JSON document `body`.
pub(crate) fn json_strings<const N: usize>(
    body: &[u8],
    paths: [&str; N],
) -> Result<[Option<String>; N], serde_json::Error> {
    let split: Vec<Vec<&str>> = paths.iter().map(|path| path.split('.').collect()).collect();
    let wanted: Vec<(usize, &[&str])> = split
        .iter()
        .enumerate()
        .map(|(index, segments)| (index, segments.as_slice()))
        .collect();
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    Wanted {
        paths: wanted,
        out: &mut out,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(out)
}

/// The paths that reach into one value: for each, its index in the output and the
/// segments left below this value (none: this value is the string wanted).
struct Wanted<'p, 'o> {
    paths: Vec<(usize, &'p [&'p str])>,
    out: &'o mut [Option<String>],
}

impl<'de> DeserializeSeed<'de> for Wanted<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Wanted<'_, '_> {
    fn leaves(&mut self, value: &str) {
        for (index, rest) in &self.paths {
            if rest.is_empty() {
                self.out[*index] = Some(value.to_owned());
            }
        }
    }
}

impl<'de> Visitor<'de> for Wanted<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(mut self, value: &str) -> Result<(), E> {
        self.leaves(value);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            let below: Vec<(usize, &[&str])> = self
                .paths
                .iter()
                .filter(|(_, rest)| rest.first() == Some(&key.as_ref()))
                .map(|(index, rest)| (*index, &rest[1..]))
                .collect();
            if below.is_empty() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            // A key given again replaces what its earlier value gave, as in a parsed object.
            for (index, _) in &below {
                self.out[*index] = None;
            }
            map.next_value_seed(Wanted {
                paths: below,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object's key, borrowed from the body unless it holds an escape.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::verify::json_str;

    const PATHS: [&str; 5] = ["type", "id", "event.type", "event.n", "action"];

    /// What reading the parsed document finds, for comparison.
    fn parsed(document: &Value) -> [Option<String>; 5] {
        PATHS.map(|path| json_str(document, path).map(str::to_owned))
    }

    #[test]
    fn the_strings_at_the_paths_are_read_and_the_rest_is_skipped() {
        let body = br#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"type":"x","n":[1,2.5,{"a":null}]}},
            "event":{"type":"app_mention","n":3},"action":true}"#;
        assert_eq!(
            json_strings(body, PATHS).unwrap(),
            [
                Some("invoice.paid".to_owned()),
                Some("evt_1".to_owned()),
                Some("app_mention".to_owned()),
                None,
                None
            ]
        );
    }

    #[test]
    fn escaped_keys_and_values_are_read_as_a_parsed_document_reads_them() {
        let body = br#"{"t\u0079pe":"a\"b\u00e9","event":{"type":"\ud83d\ude00"}}"#;
        let document: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json_strings(body, PATHS).unwrap(), parsed(&document));
        assert_eq!(
            json_strings(body, ["type"]).unwrap(),
            [Some("a\"bé".to_owned())]
        );
    }

    #[test]
    fn a_key_given_twice_counts_as_its_last_value() {
        let body = br#"{"type":"first","event":{"type":"x"},"type":"last","event":"flat"}"#;
        let document: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json_strings(body, PATHS).unwrap(), parsed(&document));
        assert_eq!(
            json_strings(body, ["type", "event.type"]).unwrap(),
            [Some("last".to_owned()), None]
        );
    }

    #[test]
    fn a_document_that_is_not_an_object_has_none_of_them() {
        for body in [&b"[1,2]"[..], b"\"type\"", b"3", b"null"] {
            assert_eq!(json_strings(body, ["type"]).unwrap(), [None], "{body:?}");
        }
    }

    #[test]
    fn a_body_that_is_not_json_is_an_error() {
        for body in [&b""[..], b"{", b"{\"type\":}", b"{} trailing", b"type=x"] {
            assert!(json_strings(body, ["type"]).is_err(), "{body:?}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z\"\\\\é]{0,6}".prop_map(Value::from),
            prop::sample::select(vec!["type", "id", "event", "n", "action"]).prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["type", "id", "event", "n", "action", "other"]),
                        inner
                    ),
                    0..6
                )
                .prop_map(|members| {
                    Value::Object(
                        members
                            .into_iter()
                            .map(|(key, value)| (key.to_owned(), value))
                            .collect(),
                    )
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_document_reads_as_its_parsed_tree_reads(document in json_value()) {
            let body = serde_json::to_vec(&document).unwrap();
            prop_assert_eq!(json_strings(&body, PATHS).unwrap(), parsed(&document));
        }
    }
}
