//! pinnace's Rust core. The modules are plain Rust; only `python` below
//! knows about Python, and it stays a thin binding.

pub mod error;
pub mod ops;
pub mod plan;
pub mod spawn;

use error::{Error, Result};
use oci_spec::runtime::Spec;

/// Parse a runtime spec (config.json) and plan the child's work.
pub fn plan_from_json(spec_json: &str) -> Result<plan::Plan> {
    let spec: Spec = serde_json::from_str(spec_json).map_err(|e| Error::Spec(e.to_string()))?;
    plan::build(&spec)
}

#[cfg(feature = "python")]
mod python {
    use std::sync::Mutex;
    use std::time::Duration;

    use pyo3::prelude::*;
    use pyo3::types::PyBytes;

    use crate::error::Error;
    use crate::spawn::{self, Stdio, WaitOptions};

    const PIPE: i32 = -1;
    const DEVNULL: i32 = -2;

    /// One mapping from the crate's error to `pinnace.errors`.
    fn to_py(py: Python<'_>, e: Error) -> PyErr {
        let class = match &e {
            Error::Spec(_) => "SpecError",
            Error::Exec { .. } => "ExecError",
            Error::Sys { .. } | Error::Setup { .. } | Error::ChildDied(_) | Error::Hook(_) => "SetupError",
        };
        let made = py.import("pinnace.errors").and_then(|m| {
            let cls = m.getattr(class)?;
            let obj = cls.call1((e.to_string(),))?;
            obj.setattr("exit_code", e.exit_code())?;
            Ok(PyErr::from_value(obj))
        });
        made.unwrap_or_else(|err| err)
    }

    fn stdio(fd: i32) -> PyResult<Stdio> {
        Ok(match fd {
            PIPE => Stdio::Pipe,
            DEVNULL => Stdio::Null,
            fd if fd >= 0 => Stdio::Fd(fd),
            other => return Err(pyo3::exceptions::PyValueError::new_err(format!("bad stdio value {other}"))),
        })
    }

    type ExitTuple<'py> = (i32, Option<i32>, Option<Bound<'py, PyBytes>>, Option<Bound<'py, PyBytes>>, bool);

    fn exit_tuple<'py>(py: Python<'py>, e: spawn::Exit) -> ExitTuple<'py> {
        let b = |v: Option<Vec<u8>>| v.map(|v| PyBytes::new(py, &v));
        (e.code, e.signal, b(e.stdout), b(e.stderr), e.timed_out)
    }

    fn wait_opts(forward_signals: bool, timeout: Option<f64>, input: Option<Vec<u8>>) -> WaitOptions {
        WaitOptions { forward_signals, timeout: timeout.map(Duration::from_secs_f64), input }
    }

    /// Run a container to completion: returns
    /// (pid, exit_code, signal, stdout, stderr, timed_out).
    /// `on_spawn(pid)` is called (with the GIL) as soon as the process exists.
    #[pyfunction]
    #[pyo3(signature = (spec_json, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, *, input=None, forward_signals=false, timeout=None, die_with_parent=true, on_spawn=None))]
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        py: Python<'py>,
        spec_json: &str,
        stdin: i32,
        stdout: i32,
        stderr: i32,
        input: Option<Vec<u8>>,
        forward_signals: bool,
        timeout: Option<f64>,
        die_with_parent: bool,
        on_spawn: Option<Py<PyAny>>,
    ) -> PyResult<(i32, ExitTuple<'py>)> {
        let io = [stdio(stdin)?, stdio(stdout)?, stdio(stderr)?];
        let r = py.detach(|| {
            let plan = crate::plan_from_json(spec_json)?;
            let hook = |pid: i32| match &on_spawn {
                None => Ok(()),
                Some(f) => Python::attach(|py| f.call1(py, (pid,)).map(|_| ()).map_err(|e| Error::Hook(e.to_string()))),
            };
            spawn::run(plan, io, spawn::Options { die_with_parent }, wait_opts(forward_signals, timeout, input), hook)
        });
        match r {
            Ok((pid, exit)) => Ok((pid, exit_tuple(py, exit))),
            Err(e) => Err(to_py(py, e)),
        }
    }

    /// A created container process, parked before exec until `start()`.
    #[pyclass(module = "pinnace._core")]
    struct Process {
        inner: Mutex<spawn::Container>,
        #[pyo3(get)]
        pid: i32,
    }

    #[pymethods]
    impl Process {
        fn start(&self, py: Python<'_>) -> PyResult<()> {
            py.detach(|| self.inner.lock().unwrap().start()).map_err(|e| to_py(py, e))
        }

        #[pyo3(signature = (*, forward_signals=false, timeout=None, input=None))]
        fn wait<'py>(
            &self,
            py: Python<'py>,
            forward_signals: bool,
            timeout: Option<f64>,
            input: Option<Vec<u8>>,
        ) -> PyResult<ExitTuple<'py>> {
            let r = py.detach(|| self.inner.lock().unwrap().wait(wait_opts(forward_signals, timeout, input)));
            r.map(|e| exit_tuple(py, e)).map_err(|e| to_py(py, e))
        }

        fn kill(&self, py: Python<'_>, signal: i32) -> PyResult<()> {
            self.inner.lock().unwrap().kill(signal).map_err(|e| to_py(py, e))
        }
    }

    /// Clone a container process and park it before exec.
    #[pyfunction]
    #[pyo3(signature = (spec_json, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, *, die_with_parent=true))]
    fn create(py: Python<'_>, spec_json: &str, stdin: i32, stdout: i32, stderr: i32, die_with_parent: bool) -> PyResult<Process> {
        let io = [stdio(stdin)?, stdio(stdout)?, stdio(stderr)?];
        let r = py.detach(|| {
            let plan = crate::plan_from_json(spec_json)?;
            spawn::create(plan, io, spawn::Options { die_with_parent })
        });
        match r {
            Ok(c) => Ok(Process { pid: c.pid, inner: Mutex::new(c) }),
            Err(e) => Err(to_py(py, e)),
        }
    }

    #[pymodule]
    fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("PIPE", PIPE)?;
        m.add("DEVNULL", DEVNULL)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add_function(wrap_pyfunction!(run, m)?)?;
        m.add_function(wrap_pyfunction!(create, m)?)?;
        m.add_class::<Process>()?;
        Ok(())
    }
}
