//! Newtype identifiers, so that a task id can never be passed where an attempt id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// A request, as submitted by a user. Globally unique (a UUIDv7 string).
    RequestId
);
string_id!(
    /// A task within one request's graph (`t1`, `t2`, …). Unique only within its request.
    TaskId
);
string_id!(
    /// One dispatch of a task to one device. Globally unique; results name it.
    AttemptId
);
string_id!(
    /// A registered device's name (`laptop`, `build-server-2`). Unique per orchestrator.
    DeviceName
);

/// Checks a device name: 1–64 characters of ASCII letters, digits, `-` and `_`, starting with a
/// letter or digit. Names appear in paths, logs and the planner grammar, so they are kept plain.
pub fn valid_device_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id = AttemptId::new("a-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"a-1\"");
        let back: AttemptId = serde_json::from_str("\"a-1\"").unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn device_names() {
        for ok in ["laptop", "build-server_2", "A1"] {
            assert!(valid_device_name(ok), "{ok}");
        }
        for bad in ["", "-x", "has space", "../etc", "a/b", &"x".repeat(65)] {
            assert!(!valid_device_name(bad), "{bad}");
        }
    }
}
