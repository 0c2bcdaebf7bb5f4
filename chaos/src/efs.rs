//! An EFS-like volume in the lab: an ext4 file system on a loop device whose throughput a
//! controller keeps at what [`crate::efs_model`] permits, through the block I/O throttle of
//! the lab's cgroups ([`crate::efs_throttle`]: v1 blkio or v2 io.max; both also throttle
//! buffered writes), metering what the byte counters say.
//! It exports CloudWatch-style `AWS/EFS` metrics over HTTP on loopback.
//!
//! Services use it as a `local` volume of type ext4 on the loop device: every node shares
//! the host's kernel, so each mount is the same file system.
//!
//! `scale` makes hours fit in minutes: one real second is `scale` model seconds and one
//! real byte stored or moved is `scale` model bytes, so throughput is the same in both
//! worlds while credits, sizes and the metering lag move `scale` times faster.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cmd::run;
use crate::efs_model::{EfsModel, METERING_LAG, NEW_FILE_SYSTEM_CREDITS};
use crate::efs_throttle::Throttle;
use crate::error::{LabError, Result};
use crate::names::LabPaths;

/// CloudWatch's period for the per-period sums we export.
const PERIOD: Duration = Duration::from_secs(60);

/// What EFS volume to create.
#[derive(Debug, Clone)]
pub struct EfsOptions {
    /// File-system ID, as in `fs-12345678`.
    pub id: String,
    /// Size of the backing file (real bytes).
    pub size: u64,
    /// Credits at creation (model bytes; AWS: 2.1 TiB).
    pub initial_credits: f64,
    /// Model seconds per real second and model bytes per real byte.
    pub scale: f64,
    /// How long the metered size lags the stored size (model time; AWS: about an hour).
    pub metering_lag: Duration,
    /// How often the controller meters and re-throttles (real time).
    pub tick: Duration,
}

impl EfsOptions {
    /// A new file system as AWS creates one, on a 2 GiB backing file, unscaled.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            size: 2 << 30,
            initial_credits: NEW_FILE_SYSTEM_CREDITS,
            scale: 1.0,
            metering_lag: METERING_LAG,
            tick: Duration::from_millis(500),
        }
    }
}

/// A running EFS-like volume. Dropping it stops its controller and lifts its throttle;
/// the lab's teardown removes the device and files.
#[derive(Debug)]
pub struct EfsVolume {
    id: String,
    device: String,
    maj_min: String,
    cgroup_prefix: String,
    throttle: Throttle,
    image: PathBuf,
    mount: PathBuf,
    metrics: SocketAddr,
    model: Arc<Mutex<Exported>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// What the exporter serves.
#[derive(Debug, Clone)]
struct Exported {
    model: EfsModel,
    /// Metered bytes per tick over the last [`PERIOD`] of model time.
    window: VecDeque<(Duration, f64)>,
    stored: f64,
}

impl Exported {
    fn period_sum(&self) -> f64 {
        self.window.iter().map(|(_, b)| b).sum()
    }
}

impl EfsVolume {
    /// Creates the backing file, loop device and file system under `dir`, mounts it on
    /// the host (to measure its size) and starts the controller and the exporter.
    pub fn create(paths: &LabPaths, options: EfsOptions) -> Result<Self> {
        // Refused up front rather than a volume that never slows down.
        let throttle = Throttle::for_host()?;
        let root = paths.dir().join("efs").join(&options.id);
        std::fs::create_dir_all(root.join("mnt")).map_err(LabError::io("create", &root))?;
        let image = root.join("fs.img");
        let file = std::fs::File::create(&image).map_err(LabError::io("create", &image))?;
        file.set_len(options.size)
            .map_err(LabError::io("size", &image))?;
        let device = run(
            "losetup",
            [
                std::ffi::OsStr::new("--find"),
                std::ffi::OsStr::new("--show"),
                image.as_os_str(),
            ],
        )?
        .trim()
        .to_owned();
        // No journal: its writes would come from the root cgroup, a second throttle budget.
        run("mkfs.ext4", ["-q", "-F", "-O", "^has_journal", &device])?;
        let mount = root.join("mnt");
        run("mount", [std::ffi::OsStr::new(&device), mount.as_os_str()])?;
        let maj_min = run("lsblk", ["-dno", "MAJ:MIN", &device])?
            .trim()
            .to_owned();
        let stored = used_bytes(&mount) as f64 * options.scale;
        let model = Arc::new(Mutex::new(Exported {
            model: EfsModel::new(options.initial_credits, stored, options.metering_lag),
            window: VecDeque::new(),
            stored,
        }));
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(LabError::io("listen", "127.0.0.1:0"))?;
        let metrics = listener
            .local_addr()
            .map_err(LabError::io("listen", "127.0.0.1:0"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut volume = Self {
            id: options.id.clone(),
            device,
            maj_min,
            cgroup_prefix: paths.lab().host_prefix(),
            throttle,
            image,
            mount,
            metrics,
            model,
            stop,
            threads: Vec::new(),
        };
        volume.throttle(options.initial_credits_rate());
        volume
            .threads
            .push(volume.spawn_controller(options.clone()));
        volume.threads.push(volume.spawn_exporter(listener));
        tracing::info!(id = %volume.id, device = %volume.device, metrics = %volume.metrics, "EFS volume up");
        Ok(volume)
    }

    /// File-system ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The loop device (`/dev/loopN`).
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The backing file.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// The host mount (for inspection; services mount the device themselves).
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// Where the exporter serves `/metrics`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }

    /// `docker volume create` / `--mount` options that put a local volume on it.
    pub fn volume_options(&self) -> Vec<(String, String)> {
        vec![
            ("type".into(), "ext4".into()),
            ("device".into(), self.device.clone()),
        ]
    }

    /// The model as it stands.
    pub fn model(&self) -> EfsModel {
        self.model
            .lock()
            .map(|e| e.model.clone())
            .unwrap_or_else(|p| p.into_inner().model.clone())
    }

    /// The metrics text the exporter serves.
    pub fn metrics_text(&self) -> String {
        let exported = self
            .model
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        render(&self.id, &exported)
    }

    fn throttle(&self, permitted: f64) {
        let rate = permitted.max(1.0) as u64;
        self.throttle
            .limit(&self.cgroup_prefix, &self.maj_min, rate);
    }

    fn spawn_controller(&self, options: EfsOptions) -> JoinHandle<()> {
        let (stop, model, maj_min, mount, prefix, throttle) = (
            self.stop.clone(),
            self.model.clone(),
            self.maj_min.clone(),
            self.mount.clone(),
            self.cgroup_prefix.clone(),
            self.throttle.clone(),
        );
        std::thread::spawn(move || {
            let mut last = throttle.counters(&maj_min);
            let mut at = Instant::now();
            let mut model_time = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(options.tick);
                let now = Instant::now();
                let dt = (now - at).mul_f64(options.scale);
                at = now;
                let current = throttle.counters(&maj_min);
                let read = current.0.saturating_sub(last.0) as f64 * options.scale;
                let written = current.1.saturating_sub(last.1) as f64 * options.scale;
                last = current;
                let stored = used_bytes(&mount) as f64 * options.scale;
                let permitted = {
                    let Ok(mut e) = model.lock() else { return };
                    e.model.advance(dt, read, written, stored);
                    e.stored = stored;
                    model_time += dt;
                    e.window
                        .push_back((model_time, crate::efs_model::metered_io(read, written)));
                    while e
                        .window
                        .front()
                        .is_some_and(|(t, _)| model_time.saturating_sub(*t) >= PERIOD)
                    {
                        e.window.pop_front();
                    }
                    e.model.rate_for_next(options.tick.mul_f64(options.scale))
                };
                throttle.limit(&prefix, &maj_min, permitted.max(1.0) as u64);
            }
        })
    }

    fn spawn_exporter(&self, listener: TcpListener) -> JoinHandle<()> {
        let (stop, model, id) = (self.stop.clone(), self.model.clone(), self.id.clone());
        let _ = listener.set_nonblocking(true);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut request = [0u8; 2048];
                        let _ = stream.read(&mut request);
                        let body = model.lock().map(|e| render(&id, &e)).unwrap_or_default();
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
    }
}

impl EfsOptions {
    fn initial_credits_rate(&self) -> f64 {
        let stored = 0.0;
        EfsModel::new(self.initial_credits, stored, self.metering_lag).permitted_rate()
    }
}

impl Drop for EfsVolume {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.throttle.lift(&self.cgroup_prefix, &self.maj_min);
    }
}

/// CloudWatch `AWS/EFS` metrics as the usual exporters name them (cloudwatch_exporter's
/// snake case with the statistic as suffix and the dimension as a label).
fn render(id: &str, e: &Exported) -> String {
    let label = format!("file_system_id=\"{id}\"");
    let m = &e.model;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, labels: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}\n"
        ));
    };
    gauge(
        "aws_efs_burst_credit_balance_average",
        "Burst credit balance, bytes.",
        &label,
        m.credits.floor(),
    );
    gauge(
        "aws_efs_permitted_throughput_average",
        "Permitted throughput, bytes per second.",
        &label,
        m.permitted_rate().floor(),
    );
    gauge(
        "aws_efs_metered_iobytes_sum",
        "Metered I/O bytes in the last 60 s period.",
        &label,
        e.period_sum().floor(),
    );
    gauge(
        "aws_efs_storage_bytes_average",
        "Metered size, bytes.",
        &format!("{label},storage_class=\"Total\""),
        m.metered_size.floor(),
    );
    gauge(
        "aws_efs_data_write_iobytes_sum",
        "Bytes written so far.",
        &label,
        m.written_total.floor(),
    );
    gauge(
        "aws_efs_data_read_iobytes_sum",
        "Bytes read so far.",
        &label,
        m.read_total.floor(),
    );
    out
}

fn used_bytes(mount: &Path) -> u64 {
    nix::sys::statvfs::statvfs(mount)
        .map(|s| (s.blocks() - s.blocks_free()) * s.fragment_size())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_named_like_the_cloudwatch_exporter_names_them() {
        let e = Exported {
            model: EfsModel::new(1e9, 5e9, METERING_LAG),
            window: VecDeque::from([
                (Duration::from_secs(1), 100.0),
                (Duration::from_secs(2), 50.0),
            ]),
            stored: 5e9,
        };
        let text = render("fs-1", &e);
        assert!(
            text.contains(
                "aws_efs_burst_credit_balance_average{file_system_id=\"fs-1\"} 1000000000\n"
            ),
            "{text}"
        );
        assert!(text.contains("aws_efs_metered_iobytes_sum{file_system_id=\"fs-1\"} 150\n"));
        assert!(text.contains("aws_efs_storage_bytes_average{file_system_id=\"fs-1\",storage_class=\"Total\"} 5000000000\n"));
        assert!(text
            .contains("aws_efs_permitted_throughput_average{file_system_id=\"fs-1\"} 104857600\n"));
    }
}
