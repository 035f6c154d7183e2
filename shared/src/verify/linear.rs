//! Linear: not yet implemented; refuses every request.

use std::time::Duration;

use time::OffsetDateTime;

use super::{AuthFailure, Delivery, MalformedRequest, OutgoingDelivery, SignatureScheme};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

#[derive(Debug, Clone, Copy, Default)]
pub struct Linear;

impl super::sealed::Sealed for Linear {}

/// The scheme the provider table names for linear.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Linear))
}

impl SignatureScheme for Linear {
    fn provider(&self) -> Provider {
        Provider::Linear
    }

    fn check_signature(
        &self,
        _request: &InboundRequest,
        _keys: &KeyRing,
        _now: OffsetDateTime,
        _tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        Err(AuthFailure::SignatureMismatch)
    }

    fn describe(&self, _request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        Err(MalformedRequest::MissingField("unimplemented".into()))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        Vec::new()
    }

    fn sign(&self, _delivery: &OutgoingDelivery<'_>, _key: &SigningKey) -> Vec<(String, String)> {
        Vec::new()
    }
}
