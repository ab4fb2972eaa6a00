//! [`ParamError`]: why a set of parameters does not describe a valid service.

/// Why a set of parameters does not describe a valid service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// No `serviceName`.
    #[error("serviceName parameter is mandatory.")]
    MissingServiceName,
    /// An http destination has neither `servicePath` nor `serviceDomain` (the API answers 409,
    /// which DFSL does not retry).
    #[error("When using reqMode http, servicePath or serviceDomain are mandatory")]
    HttpWithoutPathOrDomain,
    /// A tcp or sni destination lacks `srcPort` or `port`.
    #[error("When NOT using reqMode http (e.g. tcp), srcPort and port parameters are mandatory.")]
    NonHttpWithoutPorts,
    /// A destination has neither `port` nor `httpsPort`.
    #[error("When MODE is set to \"service\" or \"swarm\", the port query is mandatory")]
    MissingPort,
    /// A value that cannot be used. `param` includes the index suffix the value was read with.
    #[error("invalid value {value:?} for parameter {param}: {reason}")]
    Invalid {
        /// The parameter as given, e.g. `port.1`.
        param: String,
        /// The offending value (or list item). Passwords are redacted.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A parameter Sluice deliberately does not implement (raw HAProxy configuration).
    #[error("parameter {param} is not supported: {reason}")]
    Unsupported {
        /// The parameter name.
        param: String,
        /// Why it is not supported.
        reason: String,
    },
}

impl ParamError {
    /// True for the error DFP answered with 409 Conflict (DFSL treats it as final).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ParamError::HttpWithoutPathOrDomain)
    }

    /// The parameter the error is about, when there is one.
    pub fn param(&self) -> Option<&str> {
        match self {
            ParamError::MissingServiceName => Some("serviceName"),
            ParamError::Invalid { param, .. } | ParamError::Unsupported { param, .. } => {
                Some(param)
            }
            ParamError::HttpWithoutPathOrDomain
            | ParamError::NonHttpWithoutPorts
            | ParamError::MissingPort => None,
        }
    }
}
