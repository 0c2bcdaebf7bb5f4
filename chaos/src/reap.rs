//! Tearing labs down, by name: every cgroup, namespace, loop device, mount and folder that
//! carries the lab's prefix goes, whether or not its state file survived. The same code
//! serves a normal teardown, `down --all` and the clean-up of labs whose owner crashed.

use std::path::{Path, PathBuf};

use crate::cgroup::{list_cgroups, NodeCgroup};
use crate::cmd::run;
use crate::error::Result;
use crate::names::{LabName, LabPaths, HOST_PREFIX};
use crate::net::{delete_netns, list_netns};
use crate::remove::remove_retrying;
use crate::state::{list_labs, LabState};

/// Removes everything of one lab. Idempotent.
pub fn reap_lab(paths: &LabPaths) -> Result<()> {
    reap_prefix(&paths.lab().host_prefix())?;
    release_files_under(&paths.dir())?;
    remove_dir_retrying(&paths.dir())
}

/// Removes every lab under `root` and every lab object on the host, including those of
/// labs whose folder is gone. Returns the labs that had a folder.
pub fn reap_all(root: &Path) -> Result<Vec<LabName>> {
    let labs = list_labs(root);
    reap_prefix(HOST_PREFIX)?;
    for lab in &labs {
        reap_lab(&LabPaths::new(root, lab.clone()))?;
    }
    Ok(labs)
}

/// Removes labs whose owning process has ended without tearing them down (a test killed
/// by a timeout, a crashed run). Labs left running on purpose have no owner and stay.
pub fn reap_orphans(root: &Path) -> Result<Vec<LabName>> {
    let mut reaped = Vec::new();
    for lab in list_labs(root) {
        let paths = LabPaths::new(root, lab.clone());
        let orphaned = match LabState::load(&paths.state_file()) {
            Ok(state) => state.owner.is_some_and(|o| !o.is_alive()),
            Err(_) => false, // being created right now, or not ours to judge
        };
        if orphaned {
            tracing::info!(lab = %lab, "Reaping a lab whose owner is gone");
            reap_lab(&paths)?;
            reaped.push(lab);
        }
    }
    Ok(reaped)
}

fn reap_prefix(prefix: &str) -> Result<()> {
    // Kill every node before deleting anything, so no daemon sees its peers vanish one by
    // one and starts reacting.
    let cgroups = list_cgroups(prefix);
    // In every tree the name is found in: the lab's own tree is in a state file that may
    // be gone.
    for name in &cgroups {
        for cgroup in NodeCgroup::everywhere(name) {
            cgroup.kill_all()?;
        }
    }
    for name in &cgroups {
        for cgroup in NodeCgroup::everywhere(name) {
            cgroup.remove()?;
        }
    }
    for netns in list_netns(prefix) {
        delete_netns(&netns)?;
    }
    Ok(())
}

/// Unmounts host-visible mounts below `dir` and detaches loop devices backed by files below
/// it (node mounts live in node namespaces and vanished with their processes).
fn release_files_under(dir: &Path) -> Result<()> {
    for mount_point in host_mounts_under(dir) {
        run(
            "umount",
            [std::ffi::OsStr::new("-l"), mount_point.as_os_str()],
        )?;
    }
    for (device, _) in loop_devices_under(dir) {
        // A throttle left on the device number would slow down whoever gets it next.
        if let (Ok(maj_min), Ok(throttle)) = (
            run("lsblk", ["-dno", "MAJ:MIN", &device]),
            crate::efs_throttle::Throttle::for_host(),
        ) {
            // The lab's own cgroups go with the lab; the root's rule would stay.
            throttle.lift("", maj_min.trim());
        }
        if let Err(e) = run("losetup", ["-d", &device]) {
            // Detached meanwhile (autoclear, once its last mount went) is what we wanted.
            if loop_devices_under(dir).iter().any(|(d, _)| *d == device) {
                return Err(e);
            }
        }
    }
    // A device still mounted in a node namespace the kernel is freeing is only marked
    // for autoclear by `losetup -d`; it goes when that last mount does, a moment later.
    // Wait for it, so a lab that is torn down has nothing left on the host.
    remove_retrying("detach loop devices", dir, |d| {
        match loop_devices_under(d).as_slice() {
            [] => Ok(()),
            [(device, _), ..] => Err(std::io::Error::other(format!("{device} is still attached"))),
        }
    })
}

/// What of a lab is still on the host; empty when the lab is fully gone.
pub fn leftovers(paths: &LabPaths) -> Vec<String> {
    let mut found = objects_left(&paths.lab().host_prefix(), &paths.dir());
    if paths.dir().exists() {
        found.push(format!("folder {}", paths.dir().display()));
    }
    found
}

/// What any lab left on the host: every lab object, whichever lab or run made it.
pub fn all_leftovers(root: &Path) -> Vec<String> {
    let mut found = objects_left(HOST_PREFIX, root);
    found.extend(
        list_labs(root)
            .into_iter()
            .map(|lab| format!("folder {}", root.join(lab.as_str()).display())),
    );
    found
}

fn objects_left(prefix: &str, dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for name in list_cgroups(prefix) {
        let pids: Vec<i32> = NodeCgroup::everywhere(&name)
            .iter()
            .flat_map(NodeCgroup::pids)
            .collect();
        found.push(format!("cgroup {name} (processes {pids:?})"));
    }
    found.extend(
        list_netns(prefix)
            .into_iter()
            .map(|n| format!("network namespace {n}")),
    );
    found.extend(
        host_mounts_under(dir)
            .into_iter()
            .map(|m| format!("mount {}", m.display())),
    );
    found.extend(
        loop_devices_under(dir)
            .into_iter()
            .map(|(d, f)| format!("loop device {d} on {f}")),
    );
    found
}

fn host_mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    // Deepest first, so nested mounts come off before their parents.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts
}

fn loop_devices_under(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            let backing = backing.trim().trim_end_matches(" (deleted)").to_owned();
            Path::new(&backing)
                .starts_with(dir)
                .then(|| (format!("/dev/{name}"), backing))
        })
        .collect()
}

fn remove_dir_retrying(dir: &Path) -> Result<()> {
    remove_retrying("remove lab folder", dir, |d| std::fs::remove_dir_all(d))
}
