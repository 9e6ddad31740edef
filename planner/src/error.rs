//! The crate's one error type, with a stable machine code per variant.

/// What the rules planner reads, shown with every [`Error::Unplannable`].
pub(crate) const GRAMMAR_HINT: &str = "The rules planner only reads: run \"CMD\", fetch URL, \
     write \"TEXT\" to PATH, write the result to PATH, read PATH, joined by \"and\", \",\" or \
     \"then\", each optionally \"on DEVICE\". For free-form requests, start the server with \
     --planner llm.";

/// Why a request could not be planned, or why a plan is not acceptable.
///
/// [`Error::code`] is the stable code the REST API returns; the `Display` text is the human
/// message that goes with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request text is empty or only whitespace.
    #[error("the request is empty")]
    Empty,

    /// The plan has more tasks or edges than [`crate::Limits`] allow.
    #[error("the plan has {count} {what}; the limit is {limit}")]
    TooLarge {
        /// What is counted: `"tasks"` or `"edges"`.
        what: &'static str,
        count: usize,
        limit: usize,
    },

    /// The planner could not read (part of) the request.
    ///
    /// `understood` holds the parts it read, as written. `not_understood` holds one ready-to-show
    /// description per part it could not read: the part in double quotes, sometimes followed by
    /// the reason in parentheses (`"fetch ftp://x" (...)`), or a note such as
    /// `nothing after "and" at the end`.
    #[error("{}", unplannable_message(understood, not_understood))]
    Unplannable {
        understood: Vec<String>,
        not_understood: Vec<String>,
    },

    /// `on NAME` names neither a registered device nor a device kind.
    #[error("{}", unknown_device_message(name, known))]
    UnknownDevice {
        /// The name as written in the request.
        name: String,
        /// The registered device names, sorted.
        known: Vec<String>,
    },

    /// A plan breaks a structural rule (duplicate id, dangling edge, cycle, …).
    #[error("invalid plan: {0}")]
    InvalidPlan(String),

    /// The LLM planner plans only for online devices, and none is.
    #[error("no device is online; the LLM planner plans only for online devices")]
    NoOnlineDevice,

    /// The LLM endpoint could not be used; `code` is the client's (`llm_unreachable`,
    /// `llm_timeout`, `llm_http_error`, `llm_bad_response`, `llm_cassette_miss`, …).
    #[error("{message}")]
    Llm { code: &'static str, message: String },

    /// The model's plan was still refused after every repair round; `errors` are the last
    /// answer's.
    #[error(
        "the LLM planner's answer was not a valid plan after {attempts} attempts: {}",
        errors.join("; ")
    )]
    PlanInvalid { attempts: u32, errors: Vec<String> },

    /// The planner will not plan this request: the model refused it (it would destroy data,
    /// or needs a device that is not there), or the plan would destroy data.
    #[error("the planner refused this request: {reason}")]
    Refused { reason: String },

    /// The model's revision was still unreadable after every repair round.
    #[error(
        "the LLM planner's revision was not valid after {attempts} attempts: {}",
        errors.join("; ")
    )]
    RevisionInvalid { attempts: u32, errors: Vec<String> },
}

impl Error {
    /// The stable machine-readable code, used by the REST API.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Empty => "empty_request",
            Error::TooLarge { .. } => "plan_too_large",
            Error::Unplannable { .. } => "unplannable",
            Error::UnknownDevice { .. } => "unknown_device",
            Error::InvalidPlan(_) => "invalid_plan",
            Error::NoOnlineDevice => "no_online_device",
            Error::Llm { code, .. } => code,
            Error::PlanInvalid { .. } => "plan_invalid",
            Error::Refused { .. } => "plan_refused",
            Error::RevisionInvalid { .. } => "revision_invalid",
        }
    }
}

fn unplannable_message(understood: &[String], not_understood: &[String]) -> String {
    let understood = if understood.is_empty() {
        "nothing".to_owned()
    } else {
        understood.join(", ")
    };
    format!(
        "could not plan this request (understood: {understood}; did not understand: {}). \
         {GRAMMAR_HINT}",
        not_understood.join(", ")
    )
}

fn unknown_device_message(name: &str, known: &[String]) -> String {
    let known = if known.is_empty() {
        "no devices are registered".to_owned()
    } else {
        format!("registered: {}", known.join(", "))
    };
    format!("no registered device or device kind is called `{name}` ({known})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Error> {
        vec![
            Error::Empty,
            Error::TooLarge {
                what: "tasks",
                count: 300,
                limit: 256,
            },
            Error::Unplannable {
                understood: vec![],
                not_understood: vec!["\"x\"".into()],
            },
            Error::UnknownDevice {
                name: "toaster".into(),
                known: vec![],
            },
            Error::InvalidPlan("cycle".into()),
            Error::NoOnlineDevice,
            Error::Llm {
                code: "llm_unreachable",
                message: "cannot reach".into(),
            },
            Error::PlanInvalid {
                attempts: 3,
                errors: vec!["a".into(), "b".into()],
            },
            Error::RevisionInvalid {
                attempts: 3,
                errors: vec!["c".into()],
            },
        ]
    }

    #[test]
    fn every_error_has_a_code_and_a_message() {
        let mut codes: Vec<&str> = all().iter().map(Error::code).collect();
        for e in all() {
            assert!(!e.code().is_empty(), "{e:?}");
            assert!(!e.to_string().trim().is_empty(), "{e:?}");
        }
        codes.dedup();
        assert_eq!(
            codes,
            [
                "empty_request",
                "plan_too_large",
                "unplannable",
                "unknown_device",
                "invalid_plan",
                "no_online_device",
                "llm_unreachable",
                "plan_invalid",
                "revision_invalid",
            ]
        );
    }

    #[test]
    fn messages() {
        let check = |e: Error, expect: &str| assert_eq!(e.to_string(), expect);
        check(
            Error::UnknownDevice {
                name: "toaster".into(),
                known: vec!["laptop".into(), "server".into()],
            },
            "no registered device or device kind is called `toaster` (registered: laptop, server)",
        );
        check(
            Error::UnknownDevice {
                name: "toaster".into(),
                known: vec![],
            },
            "no registered device or device kind is called `toaster` (no devices are registered)",
        );
        check(
            Error::TooLarge {
                what: "edges",
                count: 5000,
                limit: 4096,
            },
            "the plan has 5000 edges; the limit is 4096",
        );
        check(
            Error::PlanInvalid {
                attempts: 3,
                errors: vec!["task t1: x".into(), "invalid plan: cycle".into()],
            },
            "the LLM planner's answer was not a valid plan after 3 attempts: task t1: x; \
             invalid plan: cycle",
        );
        check(
            Error::Unplannable {
                understood: vec!["on laptop run \"echo a\"".into()],
                not_understood: vec!["\"make me a sandwich\"".into()],
            },
            &format!(
                "could not plan this request (understood: on laptop run \"echo a\"; \
                 did not understand: \"make me a sandwich\"). {GRAMMAR_HINT}"
            ),
        );
    }
}
