//! Traffic generator for the integration tests. It first moves itself into the cgroup whose
//! `cgroup.procs` is given, so the test's programs see exactly this process's traffic, then
//! does one thing and prints `{"pid":..,"local_port":..}` on stdout.
//!
//! sa-traffic CGROUP_PROCS tcp ADDR SEND RECV   connect, send SEND bytes, half-close,
//!                                              read until EOF (expects RECV bytes), close
//! sa-traffic CGROUP_PROCS tcp-peer-closes ADDR SEND RECV
//!                                              send, read until the peer closes, close
//! sa-traffic CGROUP_PROCS tcp-close-first ADDR SEND RECV
//!                                              send, read RECV bytes, close at once
//! sa-traffic CGROUP_PROCS udp-sendto ADDR N    N datagrams from one unconnected socket
//! sa-traffic CGROUP_PROCS udp-connected ADDR N connect a UDP socket, send N datagrams
//! sa-traffic CGROUP_PROCS udp-spray ADDR N    one datagram to each of N ports from ADDR's port on
//! sa-traffic CGROUP_PROCS connect-loop ADDR N  N TCP connections to a listener of its own on
//!                                              ADDR, which closes first; prints elapsed_ns
//!                                              (SA_TRAFFIC_RATE=R: at most R per second)
//! sa-traffic CGROUP_PROCS connect-to ADDR N    the same to a listener at ADDR (`serve`'s)
//! sa-traffic CGROUP_PROCS serve ADDR           connect-loop's listener alone, until killed;
//!                                              prints its port
//! sa-traffic CGROUP_PROCS udp-loop ADDR N      N datagrams to ADDR from one socket; elapsed_ns
//! sa-traffic CGROUP_PROCS udp-distinct ADDR N  N datagrams from one socket, each to a new
//!                                              destination (ports 1024.., then the next IPv4
//!                                              address up from ADDR's); elapsed_ns
//! sa-traffic CGROUP_PROCS burst-hide ADDR N FOREIGN
//!                                              N TCP connections to a listener of its own on
//!                                              ADDR, and one connect to FOREIGN (a closed
//!                                              port, refused) after the first N/2 of them
//! sa-traffic CGROUP_PROCS exec-storm ADDR SECS for SECS seconds: two threads execve a file
//!                                              that does not exist, with 24 arguments of 100
//!                                              bytes each, and a third forks children that
//!                                              exit at once; prints failed_execs and forks
//!                                              (ADDR unused)
//! sa-traffic CGROUP_PROCS connect-exec ADDR unlink|keep PROGRAM [ARGS...]
//!                                              connect to ADDR, keep the socket, remove its
//!                                              own executable (unlink) or not, then exec
//!                                              PROGRAM: a connect credited to what it exec'd
//! sa-traffic CGROUP_PROCS refused ADDR         connect to a closed port (must be refused)
//! sa-traffic CGROUP_PROCS exit ADDR            connect, then exit at once
use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream, UdpSocket},
    process::exit,
};

fn fail(msg: String) -> ! {
    eprintln!("sa-traffic: {msg}");
    exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        fail("usage: sa-traffic CGROUP_PROCS MODE ADDR [N...]".into());
    }
    let pid = std::process::id();
    std::fs::write(&args[1], pid.to_string())
        .unwrap_or_else(|e| fail(format!("joining {}: {e}", args[1])));
    let addr: SocketAddr = args[3]
        .parse()
        .unwrap_or_else(|e| fail(format!("{}: {e}", args[3])));
    let num = |i: usize| -> usize {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fail(format!("argument {i} must be a number")))
    };
    let local_port = match args[2].as_str() {
        mode @ ("tcp" | "tcp-peer-closes" | "tcp-close-first") => {
            let (send, recv) = (num(4), num(5));
            let mut s = TcpStream::connect(addr).unwrap_or_else(|e| fail(format!("connect: {e}")));
            let port = s.local_addr().unwrap().port();
            s.write_all(&vec![b'x'; send])
                .unwrap_or_else(|e| fail(format!("write: {e}")));
            if mode == "tcp" {
                s.shutdown(Shutdown::Write).unwrap();
            }
            let mut got = Vec::new();
            if mode == "tcp-close-first" {
                got.resize(recv, 0);
                s.read_exact(&mut got)
                    .unwrap_or_else(|e| fail(format!("read: {e}")));
            } else {
                s.read_to_end(&mut got)
                    .unwrap_or_else(|e| fail(format!("read: {e}")));
            }
            if got.len() != recv {
                fail(format!("expected {recv} bytes, got {}", got.len()));
            }
            drop(s);
            port
        }
        "udp-sendto" | "udp-connected" => {
            let n = num(4);
            let s = udp_socket_for(addr);
            if args[2] == "udp-connected" {
                s.connect(addr)
                    .unwrap_or_else(|e| fail(format!("connect: {e}")));
                for _ in 0..n {
                    let _ = s.send(b"datagram");
                }
            } else {
                for _ in 0..n {
                    s.send_to(b"datagram", addr)
                        .unwrap_or_else(|e| fail(format!("send_to: {e}")));
                }
            }
            s.local_addr().unwrap().port()
        }
        "udp-spray" => {
            let n = num(4);
            let s = udp_socket_for(addr);
            for i in 0..n {
                let mut dst = addr;
                dst.set_port(addr.port() + i as u16);
                s.send_to(b"datagram", dst)
                    .unwrap_or_else(|e| fail(format!("send_to {dst}: {e}")));
            }
            s.local_addr().unwrap().port()
        }
        "connect-loop" => {
            let listener = serve(addr);
            connect_loop(pid, listener, num(4))
        }
        "connect-to" => connect_loop(pid, addr, num(4)),
        "burst-hide" => {
            let (n, target) = (num(4), serve(addr));
            let foreign: SocketAddr = args
                .get(5)
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| fail("argument 5 must be an address".into()));
            let mut eof = [0u8; 1];
            for i in 0..n {
                if i == n / 2 {
                    let _ = TcpStream::connect(foreign);
                }
                let mut c =
                    TcpStream::connect(target).unwrap_or_else(|e| fail(format!("connect: {e}")));
                let _ = c.write_all(b"x");
                let _ = c.read(&mut eof);
            }
            target.port()
        }
        "serve" => {
            let target = serve(addr);
            println!("{{\"pid\":{pid},\"local_port\":{}}}", target.port());
            // Serve until killed.
            loop {
                std::thread::park();
            }
        }
        "udp-distinct" => {
            let n = num(4);
            let SocketAddr::V4(base) = addr else {
                fail("udp-distinct takes an IPv4 address".into())
            };
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            const PORTS: usize = 60_000;
            let start = std::time::Instant::now();
            for i in 0..n {
                let ip = u32::from(*base.ip()) + (i / PORTS) as u32;
                let dst =
                    SocketAddr::from((std::net::Ipv4Addr::from(ip), 1024 + (i % PORTS) as u16));
                s.send_to(b"datagram", dst)
                    .unwrap_or_else(|e| fail(format!("send_to {dst}: {e}")));
            }
            let ns = start.elapsed().as_nanos();
            println!("{{\"pid\":{pid},\"local_port\":0,\"elapsed_ns\":{ns},\"stalls\":0}}");
            exit(0)
        }
        "udp-loop" => {
            let n = num(4);
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let start = std::time::Instant::now();
            for _ in 0..n {
                s.send_to(b"datagram", addr)
                    .unwrap_or_else(|e| fail(format!("send_to: {e}")));
            }
            let ns = start.elapsed().as_nanos();
            println!("{{\"pid\":{pid},\"local_port\":0,\"elapsed_ns\":{ns},\"stalls\":0}}");
            exit(0)
        }
        // Exec-heavy work: N times fork + exec of /bin/true, each waited for (ADDR unused).
        "exec-loop" => {
            let n = num(4);
            let start = std::time::Instant::now();
            for _ in 0..n {
                std::process::Command::new("/bin/true")
                    .status()
                    .unwrap_or_else(|e| fail(format!("/bin/true: {e}")));
            }
            let ns = start.elapsed().as_nanos();
            println!("{{\"pid\":{pid},\"local_port\":0,\"elapsed_ns\":{ns},\"stalls\":0}}");
            exit(0)
        }
        "exec-storm" => exec_storm(pid, num(4)),
        "connect-exec" => {
            use std::os::unix::process::CommandExt;
            let s = TcpStream::connect(addr).unwrap_or_else(|e| fail(format!("connect: {e}")));
            let port = s.local_addr().unwrap().port();
            println!("{{\"pid\":{pid},\"local_port\":{port}}}");
            std::io::stdout().flush().unwrap();
            if args.get(4).map(String::as_str) == Some("unlink") {
                let me = std::env::current_exe().unwrap();
                std::fs::remove_file(&me).unwrap_or_else(|e| fail(format!("unlink: {e}")));
            }
            let program = args.get(5).unwrap_or_else(|| fail("PROGRAM".into()));
            let e = std::process::Command::new(program).args(&args[6..]).exec();
            fail(format!("exec {program}: {e}"))
        }
        "refused" => match TcpStream::connect(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => 0,
            other => fail(format!("expected connection refused, got {other:?}")),
        },
        "exit" => {
            let s = TcpStream::connect(addr).unwrap_or_else(|e| fail(format!("connect: {e}")));
            let port = s.local_addr().unwrap().port();
            println!("{{\"pid\":{pid},\"local_port\":{port}}}");
            std::io::stdout().flush().unwrap();
            // Exit without closing: the kernel closes the socket as the process dies.
            exit(0)
        }
        other => fail(format!("unknown mode {other}")),
    };
    // Stay alive a little (SA_TRAFFIC_LINGER_MS), so that a test can rely on /proc still
    // describing this process when its events are read.
    if let Some(ms) = std::env::var("SA_TRAFFIC_LINGER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    println!("{{\"pid\":{pid},\"local_port\":{local_port}}}");
}

/// Issue 31's process-record flood: failing execs with large argument lists on two threads,
/// and a fork loop, for `seconds`.
fn exec_storm(pid: u32, seconds: usize) -> ! {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let forks = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (stop, failed) = (stop.clone(), failed.clone());
        threads.push(std::thread::spawn(move || {
            let path = std::ffi::CString::new("/nonexistent/sa-exec-storm").unwrap();
            let args: Vec<std::ffi::CString> = (0..24)
                .map(|i| std::ffi::CString::new(format!("{i:02}{}", "a".repeat(98))).unwrap())
                .collect();
            let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
            argv.push(std::ptr::null());
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            while !stop.load(Relaxed) {
                // SAFETY: NUL-terminated strings and NULL-terminated arrays that outlive the
                // call; the file does not exist, so execve returns.
                unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
                failed.fetch_add(1, Relaxed);
            }
        }));
    }
    {
        let (stop, forks) = (stop.clone(), forks.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                // SAFETY: the child only calls _exit, which is async-signal-safe.
                match unsafe { libc::fork() } {
                    // SAFETY: as above.
                    0 => unsafe { libc::_exit(0) },
                    child if child > 0 => {
                        // SAFETY: waits for the child just forked.
                        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
                        forks.fetch_add(1, Relaxed);
                    }
                    _ => fail(format!("fork: {}", std::io::Error::last_os_error())),
                }
            }
        }));
    }
    std::thread::sleep(std::time::Duration::from_secs(seconds as u64));
    stop.store(true, Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    println!(
        "{{\"pid\":{pid},\"local_port\":0,\"failed_execs\":{},\"forks\":{}}}",
        failed.load(Relaxed),
        forks.load(Relaxed)
    );
    exit(0)
}

/// Closing `s` sends a reset instead of a FIN (SO_LINGER with a zero timeout).
fn reset_on_close(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket fd and a pointer to a linger of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// A listener on `addr` served by a thread of this process: it reads the client's byte and
/// resets the connection. Returns the address it listens on.
fn serve(addr: SocketAddr) -> SocketAddr {
    let listener =
        std::net::TcpListener::bind(addr).unwrap_or_else(|e| fail(format!("listen: {e}")));
    let target = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        for mut s in listener.incoming().flatten() {
            // Wait for the client's byte (its connect() has returned by then), then reset:
            // no TIME_WAIT is left anywhere, so thousands of runs do not pile up state.
            let _ = s.read(&mut byte);
            reset_on_close(&s);
        }
    });
    target
}

/// N TCP connections to `target`, a [`serve`] listener (of this process or another); prints
/// the elapsed time and how many connections took over 100 ms (a stall is a kernel-level
/// retransmit, not the agent).
fn connect_loop(pid: u32, target: SocketAddr, n: usize) -> ! {
    let mut eof = [0u8; 1];
    let mut stalls = 0;
    let rate: Option<f64> = std::env::var("SA_TRAFFIC_RATE")
        .ok()
        .and_then(|r| r.parse().ok());
    let start = std::time::Instant::now();
    let mut took: Vec<u64> = Vec::with_capacity(n);
    for i in 0..n {
        if let Some(rate) = rate {
            let due = start + std::time::Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let t = std::time::Instant::now();
        let mut c = TcpStream::connect(target).unwrap_or_else(|e| fail(format!("connect: {e}")));
        let _ = c.write_all(b"x");
        let _ = c.read(&mut eof);
        let elapsed = t.elapsed();
        if elapsed.as_millis() > 100 {
            stalls += 1;
        }
        took.push(elapsed.as_nanos() as u64);
    }
    let ns = start.elapsed().as_nanos();
    // Latency of one connect + first byte + close, as the workload sees it.
    took.sort_unstable();
    let at = |q: f64| {
        took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let (p50, p99) = (at(0.50), at(0.99));
    println!(
        "{{\"pid\":{pid},\"local_port\":0,\"elapsed_ns\":{ns},\"stalls\":{stalls},\"p50_ns\":{p50},\"p99_ns\":{p99}}}"
    );
    exit(0)
}

/// An unbound-port UDP socket of `addr`'s family.
fn udp_socket_for(addr: SocketAddr) -> UdpSocket {
    let any: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("valid");
    UdpSocket::bind(any).unwrap_or_else(|e| fail(format!("bind: {e}")))
}
