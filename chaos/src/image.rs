//! The lab's offline workload image: a static busybox imported as `busybox:latest` on every
//! node (there is no registry to pull from).

use std::path::{Path, PathBuf};

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures::TryStreamExt;

use crate::cmd::{output_of, run};
use crate::error::{LabError, Result};

/// The tag services in the lab use (`docker service create --no-resolve-image busybox ...`).
pub const BUSYBOX_IMAGE: &str = "busybox:latest";
/// Overrides where the static busybox binary is taken from.
pub const BUSYBOX_ENV: &str = "SWARM_CHAOS_BUSYBOX";
const CACHE_DIR: &str = "/var/cache/swarm-chaos";

/// Finds a statically linked busybox: `$SWARM_CHAOS_BUSYBOX`, the lab's cache, the host's
/// own `/bin/busybox` when static, or else Debian's `busybox-static` package, downloaded
/// and unpacked into the cache (nothing is installed on the host).
pub fn find_static_busybox() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(BUSYBOX_ENV) {
        let path = PathBuf::from(path);
        return if is_static_elf(&path)? {
            Ok(path)
        } else {
            Err(LabError::Prerequisite(format!(
                "{BUSYBOX_ENV}={} is not a statically linked executable",
                path.display()
            )))
        };
    }
    let cached = Path::new(CACHE_DIR).join("busybox-static/bin/busybox");
    for candidate in [
        cached.as_path(),
        Path::new("/bin/busybox"),
        Path::new("/usr/bin/busybox"),
    ] {
        if candidate.exists() && is_static_elf(candidate)? {
            return Ok(candidate.to_path_buf());
        }
    }
    fetch_busybox_static(&cached)?;
    Ok(cached)
}

fn fetch_busybox_static(target: &Path) -> Result<()> {
    let cache = Path::new(CACHE_DIR);
    std::fs::create_dir_all(cache).map_err(LabError::io("create", cache))?;
    tracing::info!("Downloading Debian's busybox-static package into {CACHE_DIR}");
    let download = || {
        output_of(
            std::process::Command::new("apt-get")
                .args(["download", "busybox-static"])
                .current_dir(cache),
        )
    };
    if download().is_err() {
        // A fresh machine may have no package lists yet.
        run("apt-get", ["update", "-qq"])?;
        download()?;
    }
    let deb = std::fs::read_dir(cache)
        .map_err(LabError::io("read", cache))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("busybox-static") && n.ends_with(".deb"))
        })
        .ok_or_else(|| {
            LabError::Prerequisite("apt-get download busybox-static left no .deb".into())
        })?;
    let unpacked = cache.join("busybox-static");
    run(
        "dpkg",
        [
            std::ffi::OsStr::new("-x"),
            deb.as_os_str(),
            unpacked.as_os_str(),
        ],
    )?;
    let _ = std::fs::remove_file(&deb);
    if is_static_elf(target)? {
        Ok(())
    } else {
        Err(LabError::Prerequisite(format!(
            "{} from busybox-static is not a static executable",
            target.display()
        )))
    }
}

/// Whether `path` is an ELF executable without a program interpreter (PT_INTERP).
fn is_static_elf(path: &Path) -> Result<bool> {
    let bytes = std::fs::read(path).map_err(LabError::io("read", path))?;
    Ok(elf_is_static(&bytes))
}

fn elf_is_static(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    // Only 64-bit little-endian ELF is expected on the machines the lab runs on.
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap_or([0; 8])) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        bytes
            .get(at..at + 4)
            .map(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP)
            .unwrap_or(false)
    })
}

/// A root file system tarball: busybox, a symlink per applet, `/tmp` and a root user.
pub fn busybox_rootfs(busybox: &Path) -> Result<Vec<u8>> {
    let applets = run(&busybox.to_string_lossy(), ["--list"])?;
    let binary = std::fs::read(busybox).map_err(LabError::io("read", busybox))?;
    let mut tar = tar::Builder::new(Vec::new());
    let io = |e| LabError::io("build image tarball", busybox)(e);
    for (dir, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("data", 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        tar.append_data(&mut header, dir, std::io::empty())
            .map_err(io)?;
    }
    let mut append_file = |path: &str, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, path, data)
    };
    append_file("bin/busybox", 0o755, &binary).map_err(io)?;
    append_file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n").map_err(io)?;
    append_file("etc/group", 0o644, b"root:x:0:\n").map_err(io)?;
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")
            .map_err(io)?;
    }
    tar.into_inner().map_err(io)
}

/// A root file system holding one program at `/<name>` (with the shared libraries it
/// loads, when it is not static) and `/tmp`: an image `FROM scratch` without a builder.
pub fn program_rootfs(binary: &Path, name: &str) -> Result<Vec<u8>> {
    let mut files = vec![(binary.to_path_buf(), name.to_owned())];
    if !is_static_elf(binary)? {
        let ldd = run("ldd", [binary.as_os_str()])?;
        for line in ldd.lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = line
                .split("=>")
                .last()
                .and_then(|rest| rest.split_whitespace().next())
                .filter(|p| p.starts_with('/'));
            if let Some(path) = path {
                files.push((PathBuf::from(path), path.trim_start_matches('/').to_owned()));
            }
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    let io = |e| LabError::io("build image tarball", binary)(e);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o1777);
    header.set_size(0);
    tar.append_data(&mut header, "tmp", std::io::empty())
        .map_err(io)?;
    for (source, target) in files {
        let data = std::fs::read(&source).map_err(LabError::io("read", &source))?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o755);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, &target, data.as_slice())
            .map_err(io)?;
    }
    tar.into_inner().map_err(io)
}

/// Imports `rootfs` as [`BUSYBOX_IMAGE`] into one node's engine (`docker import`).
pub async fn import(client: &Docker, node: &str, rootfs: &[u8]) -> Result<()> {
    import_as(
        client,
        node,
        rootfs,
        BUSYBOX_IMAGE,
        vec![r#"CMD ["sh"]"#.to_owned(), "ENV PATH=/bin".to_owned()],
    )
    .await
}

/// Imports `rootfs` as `image` (`repo:tag`) with Dockerfile-style `changes` (`docker import`).
pub async fn import_as(
    client: &Docker,
    node: &str,
    rootfs: &[u8],
    image: &str,
    changes: Vec<String>,
) -> Result<()> {
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(changes)
        .build();
    client
        .create_image(
            Some(options),
            Some(bollard::body_full(rootfs.to_vec().into())),
            None,
        )
        .try_collect::<Vec<_>>()
        .await
        .map_err(LabError::docker(node))?;
    Ok(())
}

/// Loads a `docker save` archive into one node.
pub async fn load_archive(client: &Docker, node: &str, archive: &[u8]) -> Result<()> {
    let options = bollard::query_parameters::ImportImageOptionsBuilder::default()
        .quiet(true)
        .build();
    client
        .import_image(options, bollard::body_full(archive.to_vec().into()), None)
        .try_collect::<Vec<_>>()
        .await
        .map_err(LabError::docker(node))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_not_taken_for_a_static_one() {
        let sh = std::fs::read("/bin/sh").expect("/bin/sh");
        assert!(
            !elf_is_static(&sh),
            "/bin/sh is dynamically linked on Debian"
        );
        assert!(!elf_is_static(b"#!/bin/sh\necho not an elf\n"));
    }
}
