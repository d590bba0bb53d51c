//! Thin safe wrappers over `bpf(2)` (`libc::syscall(SYS_bpf, ...)`): hash maps and their element
//! operations, program loading with the verifier log, tcx links and `SO_ATTACH_BPF`. Every
//! object is an [`OwnedFd`]: closing it frees the map, unloads the program or detaches the link.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{EbpfError, EbpfInsn};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_HASH: u32 = 1;
/// `BPF_TCX_INGRESS` (`enum bpf_attach_type`, Linux 6.6+).
const BPF_TCX_INGRESS: u32 = 46;
const SO_ATTACH_BPF: libc::c_int = 50;

/// `BPF_ANY`: create or replace.
pub const BPF_ANY: u64 = 0;

/// eBPF program types used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ProgType {
    /// `BPF_PROG_TYPE_SOCKET_FILTER`.
    SocketFilter = 1,
    /// `BPF_PROG_TYPE_SCHED_CLS` (tc / tcx).
    SchedCls = 3,
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, c) in out
        .iter_mut()
        .zip(
            name.bytes()
                .filter(|c| c.is_ascii_alphanumeric() || *c == b'_'),
        )
        .take(15)
    {
        *o = c;
    }
    out
}

/// `bpf(cmd, attr, sizeof attr)`; returns the non-negative result or the OS error.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<libc::c_long, std::io::Error> {
    // SAFETY: `attr` is a valid, initialised `repr(C)` attribute struct of the size passed; the
    // kernel reads (and for lookups writes through the user pointers inside it, which the callers
    // make point at buffers of the sizes the map was created with) nothing beyond that.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from(r: libc::c_long, op: &'static str) -> Result<OwnedFd, EbpfError> {
    let raw = i32::try_from(r).map_err(|_| EbpfError::Os {
        op,
        source: std::io::Error::from_raw_os_error(libc::EBADF),
    })?;
    // SAFETY: the kernel just returned `raw` as a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A `BPF_MAP_TYPE_HASH` map with fixed key and value sizes.
#[derive(Debug)]
pub struct HashMap {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl HashMap {
    /// `BPF_MAP_CREATE` of a hash map.
    pub fn create(
        name: &str,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> Result<HashMap, EbpfError> {
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_HASH,
            key_size,
            value_size,
            max_entries,
            map_name: name16(name),
            ..Default::default()
        };
        let r = bpf(BPF_MAP_CREATE, &mut attr).map_err(|source| EbpfError::Os {
            op: "bpf(BPF_MAP_CREATE)",
            source,
        })?;
        Ok(HashMap {
            fd: fd_from(r, "bpf(BPF_MAP_CREATE)")?,
            key_size: key_size as usize,
            value_size: value_size as usize,
        })
    }

    /// A second handle on the same map (`dup`), e.g. for another thread.
    pub fn try_clone(&self) -> Result<HashMap, EbpfError> {
        Ok(HashMap {
            fd: self.fd.try_clone().map_err(|source| EbpfError::Os {
                op: "dup(map fd)",
                source,
            })?,
            key_size: self.key_size,
            value_size: self.value_size,
        })
    }

    fn check(&self, key: &[u8], value: Option<usize>) -> Result<(), EbpfError> {
        if key.len() != self.key_size || value.is_some_and(|v| v != self.value_size) {
            return Err(EbpfError::Size {
                key: key.len(),
                value: value.unwrap_or(self.value_size),
                want_key: self.key_size,
                want_value: self.value_size,
            });
        }
        Ok(())
    }

    fn elem(
        &self,
        cmd: libc::c_long,
        key: u64,
        value: u64,
        flags: u64,
        op: &'static str,
    ) -> Result<bool, EbpfError> {
        let mut attr = ElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key,
            value,
            flags,
            ..Default::default()
        };
        match bpf(cmd, &mut attr) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(source) => Err(EbpfError::Os { op, source }),
        }
    }

    /// `BPF_MAP_UPDATE_ELEM` with `flags` (`BPF_ANY` ...).
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), EbpfError> {
        self.check(key, Some(value.len()))?;
        self.elem(
            BPF_MAP_UPDATE_ELEM,
            key.as_ptr() as u64,
            value.as_ptr() as u64,
            flags,
            "bpf(BPF_MAP_UPDATE_ELEM)",
        )
        .map(|_| ())
    }

    /// `BPF_MAP_LOOKUP_ELEM` into `value`; `false` when the key is absent.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> Result<bool, EbpfError> {
        self.check(key, Some(value.len()))?;
        self.elem(
            BPF_MAP_LOOKUP_ELEM,
            key.as_ptr() as u64,
            value.as_mut_ptr() as u64,
            0,
            "bpf(BPF_MAP_LOOKUP_ELEM)",
        )
    }

    /// `BPF_MAP_DELETE_ELEM`; `false` when the key was absent.
    pub fn delete(&self, key: &[u8]) -> Result<bool, EbpfError> {
        self.check(key, None)?;
        self.elem(
            BPF_MAP_DELETE_ELEM,
            key.as_ptr() as u64,
            0,
            0,
            "bpf(BPF_MAP_DELETE_ELEM)",
        )
    }

    /// `BPF_MAP_GET_NEXT_KEY`: the key after `key` (the first key with `None`) into `next`;
    /// `false` at the end.
    pub fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<bool, EbpfError> {
        if let Some(k) = key {
            self.check(k, None)?;
        }
        self.check(next, None)?;
        self.elem(
            BPF_MAP_GET_NEXT_KEY,
            key.map_or(0, |k| k.as_ptr() as u64),
            next.as_mut_ptr() as u64,
            0,
            "bpf(BPF_MAP_GET_NEXT_KEY)",
        )
    }

    /// Every key in the map (a snapshot; entries may change while it runs).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, EbpfError> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut next = vec![0u8; self.key_size];
        loop {
            let more = self.next_key(out.last().map(Vec::as_slice), &mut next)?;
            if !more || out.len() > (1 << 24) {
                return Ok(out);
            }
            out.push(next.clone());
        }
    }
}

impl AsFd for HashMap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A loaded, verified program.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    kind: ProgType,
}

impl Program {
    /// `BPF_PROG_LOAD` (licence "GPL": the checksum and redirect helpers are GPL-only). On
    /// failure the load is repeated with the verifier log on and the log is in the error.
    pub fn load(kind: ProgType, name: &str, insns: &[EbpfInsn]) -> Result<Program, EbpfError> {
        let license = c"GPL";
        let insn_cnt = u32::try_from(insns.len())
            .map_err(|_| EbpfError::Assemble("program too long".into()))?;
        let mut attr = ProgLoadAttr {
            prog_type: kind as u32,
            insn_cnt,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name16(name),
            expected_attach_type: if kind == ProgType::SchedCls {
                BPF_TCX_INGRESS
            } else {
                0
            },
            ..Default::default()
        };
        match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(r) => Ok(Program {
                fd: fd_from(r, "bpf(BPF_PROG_LOAD)")?,
                kind,
            }),
            Err(first) => {
                let mut log = vec![0u8; 1 << 20];
                attr.log_level = 1;
                attr.log_size = log.len() as u32;
                attr.log_buf = log.as_mut_ptr() as u64;
                let again = bpf(BPF_PROG_LOAD, &mut attr);
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(log.get(..end).unwrap_or(&[])).into_owned();
                match again {
                    // Loaded the second time (should not happen): keep it.
                    Ok(r) => Ok(Program {
                        fd: fd_from(r, "bpf(BPF_PROG_LOAD)")?,
                        kind,
                    }),
                    Err(_) => Err(EbpfError::Load {
                        name: name.to_owned(),
                        source: first,
                        log: text,
                    }),
                }
            }
        }
    }

    /// The program type.
    pub fn kind(&self) -> ProgType {
        self.kind
    }

    /// `setsockopt(SO_ATTACH_BPF)`: runs this socket filter on every frame `sock` receives
    /// (replacing any filter it had).
    pub fn attach_socket(&self, sock: BorrowedFd<'_>) -> Result<(), EbpfError> {
        if self.kind != ProgType::SocketFilter {
            return Err(EbpfError::Assemble("not a socket filter".into()));
        }
        let fd: libc::c_int = self.fd.as_raw_fd();
        // SAFETY: `fd` is a valid c_int for the duration of the call; `sock` is an open socket
        // borrowed from its owner; the kernel only reads the value.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_BPF,
                (&fd as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(EbpfError::Os {
                op: "setsockopt(SO_ATTACH_BPF)",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// `BPF_LINK_CREATE` with `BPF_TCX_INGRESS` on `ifindex` (in the calling thread's network
    /// namespace). The program stays attached while the returned link lives.
    pub fn attach_tcx_ingress(&self, ifindex: u32) -> Result<TcxLink, EbpfError> {
        if self.kind != ProgType::SchedCls {
            return Err(EbpfError::Assemble("not a sched_cls program".into()));
        }
        let mut attr = LinkCreateAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_TCX_INGRESS,
            ..Default::default()
        };
        let r = bpf(BPF_LINK_CREATE, &mut attr).map_err(|source| EbpfError::Os {
            op: "bpf(BPF_LINK_CREATE, tcx ingress)",
            source,
        })?;
        Ok(TcxLink {
            _fd: fd_from(r, "bpf(BPF_LINK_CREATE)")?,
            ifindex,
        })
    }
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A tcx ingress attachment; dropping it detaches the program.
#[derive(Debug)]
pub struct TcxLink {
    _fd: OwnedFd,
    ifindex: u32,
}

impl TcxLink {
    /// The interface the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}
