//! Results of walks over hostile data: [`vmi_core::Partial`] with this crate's warnings.

/// The items a walk produced and the problems it met (see [`vmi_core::Partial`]).
pub type Partial<T> = vmi_core::Partial<T, crate::LinuxError>;
