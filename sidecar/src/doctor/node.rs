//! Facts about this node, read directly: the GPUs through NVML (loaded at run time, so the
//! binary runs, and says so, where there is no driver), `/dev/shm`, RDMA devices, free disk, the
//! page cache the container may hold, and the NCCL environment.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::engine::{Capability, CudaVersion};
use crate::cgroup::MemoryBudget;

/// One GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuFacts {
    pub index: u32,
    pub name: String,
    pub capability: Capability,
    /// Total framebuffer memory, bytes.
    pub memory_bytes: u64,
    /// NVSwitch fabric registration (Hopper and later report it; `None` where NVML does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fabric: Option<Fabric>,
}

/// `nvmlDeviceGetGpuFabricInfo`: whether the fabric manager has registered this GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fabric {
    /// The GPU is not on an NVSwitch fabric (PCIe cards, NVLink bridges).
    NotSupported,
    NotStarted,
    InProgress,
    /// Registered; `ok` is false when the registration itself failed (the status NVML gives).
    Completed {
        ok: bool,
    },
}

/// One RDMA device under `/sys/class/infiniband`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RdmaDevice {
    pub name: String,
    /// `link_layer` of port 1: `InfiniBand`, or `Ethernet` for RoCE.
    pub link_layer: Option<String>,
    /// `state` of port 1, e.g. `4: ACTIVE`.
    pub state: Option<String>,
}

/// The NCCL variables that decide the multi-node transport.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NcclEnv {
    pub ib_hca: Option<String>,
    pub ib_disable: Option<String>,
    pub socket_ifname: Option<String>,
}

impl NcclEnv {
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        NcclEnv {
            ib_hca: get("NCCL_IB_HCA"),
            ib_disable: get("NCCL_IB_DISABLE"),
            socket_ifname: get("NCCL_SOCKET_IFNAME"),
        }
    }

    pub fn ib_disabled(&self) -> bool {
        self.ib_disable.as_deref().is_some_and(|v| v.trim() == "1")
    }
}

/// Everything the checks know about the node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeFacts {
    /// Why there are no GPU facts (`None` when NVML answered).
    pub nvml_error: Option<String>,
    pub driver_version: Option<String>,
    /// The newest CUDA the driver supports (`nvmlSystemGetCudaDriverVersion`).
    pub cuda_driver_version: Option<CudaVersion>,
    pub gpus: Vec<GpuFacts>,
    /// Size of the `/dev/shm` file system.
    pub shm_bytes: Option<u64>,
    pub rdma_devices: Vec<RdmaDevice>,
    /// `/dev/infiniband` exists: the verbs devices are usable from this container.
    pub dev_infiniband: bool,
    /// Free bytes (for unprivileged users) where the model lives.
    pub disk_free_bytes: Option<u64>,
    pub disk_path: Option<PathBuf>,
    pub memory: MemoryBudget,
    pub nccl: NcclEnv,
}

impl NodeFacts {
    /// Reads every fact of this node; `model_dir` (or its nearest existing parent) is where free
    /// disk is measured. Never fails: a fact it cannot read stays empty, and the checks that need
    /// it say so.
    pub fn detect(model_dir: Option<&Path>) -> NodeFacts {
        let mut n = NodeFacts {
            shm_bytes: statvfs(Path::new("/dev/shm")).map(|s| s.0),
            rdma_devices: rdma_devices(Path::new("/sys/class/infiniband")),
            dev_infiniband: Path::new("/dev/infiniband").is_dir(),
            memory: MemoryBudget::detect(),
            nccl: NcclEnv::from_env(),
            ..NodeFacts::default()
        };
        if let Some(dir) = model_dir {
            let existing = dir.ancestors().find(|p| p.exists());
            if let Some(p) = existing {
                n.disk_free_bytes = statvfs(p).map(|s| s.1);
                n.disk_path = Some(p.to_path_buf());
            }
        }
        match nvml::read() {
            Ok(g) => {
                n.driver_version = g.driver_version;
                n.cuda_driver_version = g.cuda_driver_version;
                n.gpus = g.gpus;
            }
            Err(why) => n.nvml_error = Some(why),
        }
        n
    }
}

/// (total, available to unprivileged users) bytes of the file system holding `path`.
fn statvfs(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs the call fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

/// The RDMA devices of `/sys/class/infiniband` (or a test tree), sorted by name.
pub fn rdma_devices(class: &Path) -> Vec<RdmaDevice> {
    let Ok(entries) = std::fs::read_dir(class) else {
        return Vec::new();
    };
    let read = |p: PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let mut out: Vec<RdmaDevice> = entries
        .flatten()
        .map(|e| {
            let port = e.path().join("ports/1");
            RdmaDevice {
                name: e.file_name().to_string_lossy().into_owned(),
                link_layer: read(port.join("link_layer")),
                state: read(port.join("state")),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// NVML, through `nvml-wrapper`, which opens `libnvidia-ml.so.1` with `dlopen` when asked.
mod nvml {
    use nvml_wrapper::Nvml;

    use super::{Capability, CudaVersion, Fabric, GpuFacts};

    pub struct Gpus {
        pub driver_version: Option<String>,
        pub cuda_driver_version: Option<CudaVersion>,
        pub gpus: Vec<GpuFacts>,
    }

    /// The GPUs, or why NVML could not say (in words, for the report).
    pub fn read() -> Result<Gpus, String> {
        let nvml = Nvml::init().map_err(|e| match e {
            nvml_wrapper::error::NvmlError::LibloadingError(e) => format!(
                "no NVIDIA driver found: libnvidia-ml.so.1 could not be loaded ({e}); in a pod, \
                 the NVIDIA container runtime mounts it into containers that request a GPU or \
                 set NVIDIA_VISIBLE_DEVICES"
            ),
            nvml_wrapper::error::NvmlError::DriverNotLoaded => {
                "no NVIDIA driver found: libnvidia-ml is there but the kernel driver is not \
                 loaded"
                    .to_string()
            }
            e => format!("no NVIDIA driver found: NVML did not start ({e})"),
        })?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("NVML cannot count the GPUs: {e}"))?;
        let mut gpus = Vec::new();
        for index in 0..count {
            let d = nvml
                .device_by_index(index)
                .map_err(|e| format!("NVML cannot open GPU {index}: {e}"))?;
            let cc = d
                .cuda_compute_capability()
                .map_err(|e| format!("GPU {index}: no compute capability: {e}"))?;
            let memory_bytes = d
                .memory_info()
                .map(|m| m.total)
                .map_err(|e| format!("GPU {index}: no memory size: {e}"))?;
            gpus.push(GpuFacts {
                index,
                name: d.name().unwrap_or_else(|_| "unknown GPU".into()),
                capability: Capability::new(cc.major as u32, cc.minor as u32),
                memory_bytes,
                fabric: fabric(&nvml, &d),
            });
        }
        Ok(Gpus {
            driver_version: nvml.sys_driver_version().ok(),
            cuda_driver_version: nvml
                .sys_cuda_driver_version()
                .ok()
                .and_then(CudaVersion::from_nvml),
            gpus,
        })
    }

    /// `nvmlDeviceGetGpuFabricInfo`, which nvml-wrapper does not wrap; `None` where the driver
    /// lacks the call or the GPU does not answer it.
    fn fabric(nvml: &Nvml, d: &nvml_wrapper::Device<'_>) -> Option<Fabric> {
        use nvml_wrapper_sys::bindings::{
            nvmlGpuFabricInfo_t, nvmlReturn_enum_NVML_SUCCESS, NVML_GPU_FABRIC_STATE_COMPLETED,
            NVML_GPU_FABRIC_STATE_IN_PROGRESS, NVML_GPU_FABRIC_STATE_NOT_STARTED,
        };
        // Checking the symbol first: the generated wrapper method panics when it is missing
        // (drivers before 525).
        let call = nvml.lib().nvmlDeviceGetGpuFabricInfo.as_ref().ok()?;
        // SAFETY: the handle belongs to a live `Nvml`, and `info` is a zeroed struct of the
        // layout the symbol expects, which it fills.
        let mut info: nvmlGpuFabricInfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe { call(d.handle(), &mut info) };
        if rc != nvmlReturn_enum_NVML_SUCCESS {
            return None;
        }
        Some(match u32::from(info.state) {
            NVML_GPU_FABRIC_STATE_NOT_STARTED => Fabric::NotStarted,
            NVML_GPU_FABRIC_STATE_IN_PROGRESS => Fabric::InProgress,
            NVML_GPU_FABRIC_STATE_COMPLETED => Fabric::Completed {
                ok: info.status == nvmlReturn_enum_NVML_SUCCESS,
            },
            _ => Fabric::NotSupported,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rdma_class_tree() {
        let t = tempfile::tempdir().unwrap();
        for (dev, ll) in [("mlx5_1", "Ethernet"), ("mlx5_0", "InfiniBand")] {
            let port = t.path().join(dev).join("ports/1");
            std::fs::create_dir_all(&port).unwrap();
            std::fs::write(port.join("link_layer"), format!("{ll}\n")).unwrap();
            std::fs::write(port.join("state"), "4: ACTIVE\n").unwrap();
        }
        let d = rdma_devices(t.path());
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "mlx5_0");
        assert_eq!(d[0].link_layer.as_deref(), Some("InfiniBand"));
        assert_eq!(d[1].state.as_deref(), Some("4: ACTIVE"));
        assert!(rdma_devices(&t.path().join("none")).is_empty());
    }

    #[test]
    fn this_machine_without_a_driver_still_reports() {
        let n = NodeFacts::detect(Some(Path::new("/nonexistent/model")));
        // On a machine without the NVIDIA driver NVML must fail cleanly, never panic.
        if n.gpus.is_empty() {
            assert!(n.nvml_error.is_some());
        }
        assert!(n.shm_bytes.is_some(), "/dev/shm is on every Linux host");
        assert_eq!(n.disk_path.as_deref(), Some(Path::new("/")));
    }
}
