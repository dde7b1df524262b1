//! Why a step of running an instance failed. The message (`Display`) is
//! what tenants read in the instance's status and service events; the
//! source, when there is one, stays attached for the operator's logs
//! (`StepError::chain`).

use std::error::Error;

/// A failed step of provisioning, starting, changing or re-keying an
/// instance's server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    /// A file or directory operation.
    #[error("{step}: {source}")]
    Io {
        step: String,
        #[source]
        source: std::io::Error,
    },
    /// A statement on the instance's own server.
    #[error("{step}: {source}")]
    Sql {
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A program that ran and failed; its error output says why.
    #[error("{program} failed: {stderr}")]
    Program { program: String, stderr: String },
    /// Any other failing call: the store, the plan catalogue, the CA.
    #[error("{step}: {source}")]
    Other {
        step: &'static str,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
    /// A state that rules the step out, said as it is.
    #[error("{0}")]
    State(String),
}

impl StepError {
    /// Wraps an I/O error of `step` (for `map_err`; callable many times).
    pub(crate) fn io(step: impl Into<String>) -> impl Fn(std::io::Error) -> Self {
        let step = step.into();
        move |source| Self::Io {
            step: step.clone(),
            source,
        }
    }

    /// Wraps the error of a statement run for `step`.
    pub(crate) fn sql(step: &'static str) -> impl Fn(tokio_postgres::Error) -> Self {
        move |source| Self::Sql { step, source }
    }

    /// Wraps any other error of `step`.
    pub(crate) fn other<E: Into<Box<dyn Error + Send + Sync>>>(
        step: &'static str,
    ) -> impl Fn(E) -> Self {
        move |source| Self::Other {
            step,
            source: source.into(),
        }
    }

    pub(crate) fn state(message: impl Into<String>) -> Self {
        Self::State(message.into())
    }

    /// The message and every cause below it, for logs.
    pub(crate) fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = self.source().and_then(Error::source);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_step_and_the_cause_stays_attached() {
        let e = StepError::io("writing configuration")(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "permission denied",
        ));
        assert_eq!(e.to_string(), "writing configuration: permission denied");
        let source = e.source().expect("the I/O error is the source");
        assert_eq!(source.to_string(), "permission denied");
        assert_eq!(e.chain(), "writing configuration: permission denied");
        let state = StepError::state("instance vanished");
        assert!(state.source().is_none());
        assert_eq!(state.to_string(), "instance vanished");
    }

    #[test]
    fn the_chain_goes_below_the_first_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e =
            StepError::other("issuing the certificate")(Outer(std::io::Error::other("disk full")));
        assert_eq!(e.to_string(), "issuing the certificate: outer");
        assert_eq!(e.chain(), "issuing the certificate: outer: disk full");
    }
}
