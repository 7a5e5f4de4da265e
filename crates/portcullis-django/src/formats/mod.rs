//! One module per Django hasher family. Each parses the part of the stored string after the
//! algorithm prefix into a typed value (checking costs against [`crate::CostLimits`]) and
//! verifies a password against it. None of them knows about the others or about prefixes:
//! [`crate::hash`] dispatches.

pub(crate) mod argon2;
pub(crate) mod bcrypt;
pub(crate) mod digest;
pub(crate) mod pbkdf2;
pub(crate) mod scrypt;
