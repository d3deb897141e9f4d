//! Loads the real kernel programs into a child cgroup, runs the traffic generator inside it,
//! and checks the exact events the pipeline produces.
use std::time::Duration;

use sovereign_agent::{
    capture::bpf::{Capture, CaptureOptions},
    capture::pipeline::{Pipeline, PipelineOptions, Rings, Stats},
    event::{Event, EventKind, Family, FlowEvent, Proto},
    journal::output::ChannelSink,
};
use sovereign_agent_tests::{closed_port, collect_until, tcp_server, Script, TestCgroup};
use tokio::sync::{mpsc, oneshot};

const DEADLINE: Duration = Duration::from_secs(10);

struct Harness {
    cgroup: TestCgroup,
    capture: Option<Capture>,
    pipeline: Option<(Pipeline, Rings)>,
    rx: mpsc::UnboundedReceiver<Event>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Stats>>,
}

impl Harness {
    /// Loads and attaches; the pipeline is not reading yet.
    fn attached(name: &str) -> Self {
        Self::attached_with_ring(name, 1 << 20)
    }

    fn attached_with_ring(name: &str, ring_bytes: u32) -> Self {
        let cgroup = TestCgroup::new(name);
        let mut capture = Capture::load(CaptureOptions::paced(ring_bytes)).expect("load programs");
        let hooks = capture.attach(cgroup.path()).expect("attach");
        for h in hooks {
            assert!(
                h.error.is_none(),
                "{} did not attach: {:?}",
                h.hook,
                h.error
            );
        }
        let maps = capture.take_maps().expect("maps");
        let (tx, rx) = mpsc::unbounded_channel();
        let pipeline = Pipeline::new(maps, Box::new(ChannelSink(tx)), PipelineOptions::default());
        Self {
            cgroup,
            capture: Some(capture),
            pipeline: Some(pipeline),
            rx,
            stop: None,
            task: None,
        }
    }

    fn start(&mut self) {
        let (pipeline, ring) = self.pipeline.take().expect("started once");
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(async move {
            pipeline
                .run(ring, async {
                    let _ = stopped.await;
                })
                .await
                .expect("pipeline")
        }));
    }

    fn running(name: &str) -> Self {
        let mut h = Self::attached(name);
        h.start();
        h
    }

    async fn events_until(&mut self, done: impl Fn(&[FlowEvent]) -> bool) -> Vec<FlowEvent> {
        collect_until(&mut self.rx, DEADLINE, done).await
    }

    /// Stops the pipeline, detaches, and checks nothing stays attached to the cgroup.
    async fn finish(mut self) -> Stats {
        let _ = self.stop.take().map(|s| s.send(()));
        let stats = self
            .task
            .take()
            .expect("started")
            .await
            .expect("pipeline task");
        drop(self.capture.take());
        // A link is detached when its last file descriptor closes: a process another test
        // forks at this moment holds copies until it execs (they are close-on-exec), so the
        // check may wait a moment; what stays attached after that is a leak.
        let mut attached = self.cgroup.attached_programs();
        for _ in 0..50 {
            if attached.trim().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            attached = self.cgroup.attached_programs();
        }
        assert_eq!(attached.trim(), "", "programs left attached");
        stats
    }
}

fn of_kind(flows: &[FlowEvent], kind: EventKind) -> Vec<&FlowEvent> {
    flows.iter().filter(|f| f.kind == kind).collect()
}

fn has(kind: EventKind) -> impl Fn(&[FlowEvent]) -> bool {
    move |flows| flows.iter().any(|f| f.kind == kind)
}

fn assert_process(f: &FlowEvent, pid: u32) {
    assert_eq!(f.pid, pid, "{f:?}");
    assert_eq!(f.tgid, pid, "{f:?}");
    assert_eq!(f.comm, "sa-traffic", "{f:?}");
    assert_eq!(f.uid, 0, "{f:?}");
}

/// One TCP connection: 1000 bytes out, 2500 back, closed in the order `mode` says.
async fn tcp_flow(bind: &str, family: Family, mode: &str) {
    let mut h = Harness::running(&format!("tcp-{family:?}-{mode}"));
    let script = match mode {
        "tcp" => Script::ReadToEofThenReply { reply: 2500 },
        "tcp-peer-closes" => Script::ReplyAndClose {
            expect: 1000,
            reply: 2500,
        },
        _ => Script::ReplyAndWaitForClose {
            expect: 1000,
            reply: 2500,
        },
    };
    let (server, bytes_read) = tcp_server(bind, script);
    let (pid, local_port) = h
        .cgroup
        .traffic(&[mode, &server.to_string(), "1000", "2500"]);
    assert_eq!(bytes_read.recv_timeout(DEADLINE).unwrap(), 1000);

    let flows = h.events_until(has(EventKind::Close)).await;
    let connects = of_kind(&flows, EventKind::Connect);
    let established = of_kind(&flows, EventKind::Established);
    let closes = of_kind(&flows, EventKind::Close);
    assert_eq!(
        (connects.len(), established.len(), closes.len()),
        (1, 1, 1),
        "{flows:#?}"
    );
    for f in [connects[0], established[0], closes[0]] {
        assert_process(f, pid);
        assert_eq!(f.proto, Proto::Tcp);
        assert_eq!(f.family, family);
        assert_eq!(f.dst_ip, server.ip());
        assert_eq!(f.dst_port, server.port());
        assert_eq!(f.cookie, connects[0].cookie, "one socket, one cookie");
        assert!(f.exe.as_deref().unwrap_or("").ends_with("/sa-traffic") || f.exe.is_none());
    }
    assert_eq!(
        connects[0]
            .exe
            .as_deref()
            .map(|e| e.ends_with("/sa-traffic")),
        Some(true)
    );
    assert_eq!(established[0].src_port, Some(local_port));
    assert_eq!(closes[0].src_port, Some(local_port));
    assert_eq!(closes[0].bytes_sent, Some(1000));
    assert_eq!(closes[0].bytes_received, Some(2500));
    assert_eq!(closes[0].was_established, Some(true));
    let stats = h.finish().await;
    assert_eq!((stats.connect, stats.established, stats.close), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_over_ipv4_loopback_has_exact_byte_counts() {
    tcp_flow("127.0.0.1:0", Family::Ipv4, "tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_byte_counts_are_exact_when_the_peer_closes_first() {
    tcp_flow("127.0.0.1:0", Family::Ipv4, "tcp-peer-closes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_byte_counts_are_exact_when_the_client_closes_first() {
    tcp_flow("127.0.0.1:0", Family::Ipv4, "tcp-close-first").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_over_ipv6_loopback_has_exact_byte_counts() {
    tcp_flow("[::1]:0", Family::Ipv6, "tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_sendto_is_one_send_event_and_a_close_with_the_count() {
    let mut h = Harness::running("udp-sendto");
    // Nobody listens: unconnected UDP does not care, and no traffic leaves loopback.
    let dst = "127.0.0.1:9";
    let (pid, _) = h.cgroup.traffic(&["udp-sendto", dst, "25"]);
    let flows = h.events_until(has(EventKind::Close)).await;
    let sends = of_kind(&flows, EventKind::Send);
    let closes = of_kind(&flows, EventKind::Close);
    assert_eq!(
        sends.len(),
        1,
        "25 datagrams fold into one send event: {flows:#?}"
    );
    assert_eq!(closes.len(), 1, "{flows:#?}");
    assert_process(sends[0], pid);
    assert_eq!(sends[0].proto, Proto::Udp);
    assert_eq!(sends[0].dst_ip.to_string(), "127.0.0.1");
    assert_eq!(sends[0].dst_port, 9);
    assert_eq!(sends[0].count, Some(1));
    assert_eq!(closes[0].count, Some(25), "every datagram is counted");
    assert_eq!(closes[0].cookie, sends[0].cookie);
    assert_eq!(closes[0].dst_port, 9);
    assert!(of_kind(&flows, EventKind::Connect).is_empty());
    let stats = h.finish().await;
    assert_eq!((stats.send, stats.close), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_sendto_over_ipv6() {
    let mut h = Harness::running("udp6-sendto");
    let (pid, _) = h.cgroup.traffic(&["udp-sendto", "[::1]:9", "3"]);
    let flows = h.events_until(has(EventKind::Close)).await;
    let sends = of_kind(&flows, EventKind::Send);
    assert_eq!(sends.len(), 1, "{flows:#?}");
    assert_process(sends[0], pid);
    assert_eq!(sends[0].family, Family::Ipv6);
    assert_eq!(sends[0].dst_ip.to_string(), "::1");
    assert_eq!(of_kind(&flows, EventKind::Close)[0].count, Some(3));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_udp_is_a_connect_event() {
    let mut h = Harness::running("udp-connected");
    let (pid, _) = h.cgroup.traffic(&["udp-connected", "127.0.0.1:9", "4"]);
    let flows = h.events_until(has(EventKind::Connect)).await;
    let c = of_kind(&flows, EventKind::Connect)[0];
    assert_process(c, pid);
    assert_eq!(c.proto, Proto::Udp);
    assert_eq!(c.dst_port, 9);
    // Sends on a connected socket carry no address: no send events for them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(ev) = h.rx.try_recv() {
        if let Event::Flow(f) = ev {
            assert_ne!(f.kind, EventKind::Send, "{f:?}");
        }
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_closed_port_is_a_connect_and_a_failed_close() {
    let mut h = Harness::running("refused");
    let dst = closed_port("127.0.0.1:0");
    let (pid, _) = h.cgroup.traffic(&["refused", &dst.to_string()]);
    let flows = h.events_until(has(EventKind::Close)).await;
    let connect = of_kind(&flows, EventKind::Connect)[0];
    let close = of_kind(&flows, EventKind::Close)[0];
    assert_process(connect, pid);
    assert_eq!(connect.dst_port, dst.port());
    assert_eq!(close.cookie, connect.cookie);
    assert_eq!(close.was_established, Some(false));
    assert_eq!((close.bytes_sent, close.bytes_received), (Some(0), Some(0)));
    assert!(of_kind(&flows, EventKind::Established).is_empty());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_exited_before_its_event_was_read_still_yields_the_event() {
    let mut h = Harness::attached("exited");
    let (server, _) = tcp_server("127.0.0.1:0", Script::ReadToEofThenReply { reply: 0 });
    // The generator connects and exits before the pipeline reads anything.
    let (pid, local_port) = h.cgroup.traffic(&["exit", &server.to_string()]);
    h.start();
    let flows = h.events_until(has(EventKind::Close)).await;
    let connect = of_kind(&flows, EventKind::Connect)[0];
    assert_process(connect, pid);
    assert_eq!(connect.dst_ip, server.ip());
    assert_eq!(connect.dst_port, server.port());
    // The generator joins the cgroup itself, after its exec (a runtime places a process
    // before it execs: tests/tests/identity.rs), and is gone before anything is read: its
    // executable is unknown, and the event says why.
    assert_eq!(connect.exe, None, "the process is gone: no /proc data");
    assert_eq!(connect.cmdline, None);
    assert_eq!(connect.identity, Some("exited_before_read"));
    let close = of_kind(&flows, EventKind::Close)[0];
    assert_process(close, pid);
    assert_eq!(close.src_port, Some(local_port));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ring_buffer_loses_nothing_silently() {
    // 4 KiB holds about 36 records; the reader is paused while 300 first-sends happen.
    let mut h = Harness::attached_with_ring("loss", 4096);
    const N: u64 = 300;
    h.cgroup
        .traffic(&["udp-spray", "127.0.0.1:20000", &N.to_string()]);
    h.start();
    let mut lost = 0;
    let deadline = std::time::Instant::now() + DEADLINE;
    while lost == 0 && std::time::Instant::now() < deadline {
        match tokio::time::timeout(DEADLINE, h.rx.recv()).await {
            Ok(Some(Event::Loss(l))) => lost = l.lost,
            Ok(Some(Event::Flow(_))) => {}
            other => panic!("no loss event: {other:?}"),
        }
    }
    let stats = h.finish().await;
    assert!(lost > 0, "a 4 KiB ring cannot hold {N} records");
    assert_eq!(
        stats.kernel_losses, lost,
        "one loss event carries the whole gap"
    );
    // The kernel wrote N send records, one release record and the generator's exit record
    // (it exits inside the watched cgroup): each was delivered or counted.
    let release_delivered = u64::from(stats.close > 0);
    assert_eq!(
        stats.send + release_delivered + stats.process_records + stats.kernel_losses,
        N + 2,
        "{stats:?}"
    );
}
