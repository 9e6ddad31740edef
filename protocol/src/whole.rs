//! Inbound integers that JSON may also write as whole floats (`2.0`). JSON Schema's `integer`
//! admits `2.0` (it is the number 2), so a field the OpenAPI document calls an integer takes it
//! too; a fraction, a negative number or one out of the field's range is still refused.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A non-negative integer, written `2` or `2.0`.
struct Whole(u64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WholeVisitor)
    }
}

struct WholeVisitor;

impl Visitor<'_> for WholeVisitor {
    type Value = Whole;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole, E> {
        Ok(Whole(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole, E> {
        u64::try_from(v)
            .map(Whole)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole, E> {
        // 2^64 is exactly representable; every whole float below it fits a u64.
        if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            Ok(Whole(v as u64))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
}

fn narrow<T: TryFrom<u64>, E: de::Error>(n: u64) -> Result<T, E> {
    T::try_from(n).map_err(|_| {
        E::invalid_value(
            de::Unexpected::Unsigned(n),
            &"an integer in the field's range",
        )
    })
}

/// `#[serde(deserialize_with = "crate::whole::int")]`
pub fn int<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    narrow(Whole::deserialize(d)?.0)
}

/// `#[serde(default, deserialize_with = "crate::whole::opt_int")]`
pub fn opt_int<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Whole>::deserialize(d)?
        .map(|w| narrow(w.0))
        .transpose()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct T {
        #[serde(deserialize_with = "super::int")]
        n: u32,
        #[serde(default, deserialize_with = "super::opt_int")]
        m: Option<u64>,
    }

    fn read(v: serde_json::Value) -> Result<T, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_floats_are_integers() {
        assert_eq!(read(json!({"n": 2})), Ok(T { n: 2, m: None }));
        assert_eq!(
            read(json!({"n": 2.0, "m": 7.0})),
            Ok(T { n: 2, m: Some(7) })
        );
        assert_eq!(read(json!({"n": 0, "m": null})), Ok(T { n: 0, m: None }));
        for bad in [
            json!({"n": 2.5}),
            json!({"n": -1}),
            json!({"n": -1.0}),
            json!({"n": 4294967296u64}),
            json!({"n": 4294967296.0}),
            json!({"n": "2"}),
            json!({"n": 1, "m": 1e300}),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
    }
}
