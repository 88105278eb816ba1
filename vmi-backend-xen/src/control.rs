//! Pause and resume, with guards: a domain vmi paused is resumed when the guard drops, when
//! the target drops (after an error, too), and never left paused by vmi.

use std::sync::{Arc, Mutex};

use vmi_core::error::ControlError;
use vmi_core::VmControl;

use crate::handle::Xen;

/// Pause/resume of one domain. Xen counts pauses; this counts the pauses vmi made and undoes
/// the outstanding ones when it drops.
#[derive(Debug)]
pub struct XenControl {
    xen: Arc<Xen>,
    domid: u32,
    /// `Xen domain 7 (web01)`, for errors.
    target: String,
    outstanding: Mutex<u32>,
}

impl XenControl {
    /// Control of `domid`, whose xenstore name (if it has one) is `name`.
    pub fn new(xen: Arc<Xen>, domid: u32, name: Option<&str>) -> XenControl {
        let target = match name {
            Some(name) if !name.is_empty() => format!("Xen domain {domid} ({name})"),
            _ => format!("Xen domain {domid}"),
        };
        XenControl {
            xen,
            domid,
            target,
            outstanding: Mutex::new(0),
        }
    }

    /// Pauses made through this value and not yet resumed.
    pub fn outstanding_pauses(&self) -> u32 {
        *self.outstanding.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The library call that failed, with its error.
    fn call_error(call: &str, e: std::io::Error) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(std::io::Error::new(e.kind(), format!("{call}: {e}")))
    }
}

impl VmControl for XenControl {
    fn pause(&self) -> Result<(), ControlError> {
        let mut n = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
        self.xen
            .pause(self.domid)
            .map_err(|e| ControlError::Pause {
                target: self.target.clone(),
                source: Self::call_error("xc_domain_pause", e),
            })?;
        *n = n.saturating_add(1);
        Ok(())
    }

    fn resume(&self) -> Result<(), ControlError> {
        let mut n = self.outstanding.lock().unwrap_or_else(|e| e.into_inner());
        if *n == 0 {
            // Never unpause a pause vmi did not make (the toolstack's, an admin's).
            return Ok(());
        }
        self.xen
            .unpause(self.domid)
            .map_err(|e| ControlError::Resume {
                target: self.target.clone(),
                source: Self::call_error("xc_domain_unpause", e),
            })?;
        *n -= 1;
        Ok(())
    }
}

impl Drop for XenControl {
    fn drop(&mut self) {
        let n = self
            .outstanding
            .get_mut()
            .map_or_else(|e| *e.into_inner(), |n| *n);
        for _ in 0..n {
            if self.xen.unpause(self.domid).is_err() {
                break;
            }
        }
    }
}

/// Pauses a target until dropped.
///
/// ```ignore
/// let _paused = PauseGuard::new(session.control_handle().unwrap())?;
/// // ... a consistent view ...
/// // resumed here, and on every early return or `?` above
/// ```
pub struct PauseGuard {
    control: Option<Arc<dyn VmControl>>,
}

impl PauseGuard {
    /// Pauses `control`'s target.
    pub fn new(control: Arc<dyn VmControl>) -> Result<PauseGuard, ControlError> {
        control.pause()?;
        Ok(PauseGuard {
            control: Some(control),
        })
    }

    /// Resumes now, reporting a failure (dropping the guard resumes too, silently).
    pub fn resume(mut self) -> Result<(), ControlError> {
        self.control.take().map_or(Ok(()), |c| c.resume())
    }
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        if let Some(c) = self.control.take() {
            let _ = c.resume();
        }
    }
}
