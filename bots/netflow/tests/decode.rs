//! The decoder on real exporter datagrams (softflowd's) and on hostile ones:
//! templates kept per exporter, data held until its template comes, an
//! exporter that restarts with a new layout, and bytes that lie.

mod common;

use std::net::SocketAddr;

use common::{capture, installed, traffic, without_templates, write_pcap};
use grafolean_collector::testing::process::TestDir;
use grafolean_netflow_bot::decode::Decoder;
use grafolean_netflow_bot::flow::Flow;

fn total(flows: &[Flow]) -> u64 {
    flows.iter().map(|f| f.bytes).sum()
}

fn decode_all(decoder: &mut Decoder, from: SocketAddr, datagrams: &[Vec<u8>]) -> Vec<Flow> {
    let mut out = Vec::new();
    for d in datagrams {
        let report = decoder.decode(from, d, &mut out);
        assert!(!report.malformed, "{report:?}");
    }
    out
}

fn setup(name: &str) -> Option<(TestDir, std::path::PathBuf)> {
    if !installed(&["softflowd"]) {
        return None;
    }
    let dir = TestDir::new(name);
    let pcap = dir.join("flows.pcap");
    write_pcap(&pcap, &traffic());
    Some((dir, pcap))
}

#[test]
fn two_exporters_with_the_same_template_id_and_different_layouts_do_not_mix() {
    let Some((dir, pcap)) = setup("netflow-collide") else {
        return;
    };
    // softflowd's `-T ether` adds MAC and VLAN fields under the same
    // template id (1024: 20 fields instead of 16).
    let full = capture(&dir, &pcap, 9, &["-T", "full"]);
    let proto = capture(&dir, &pcap, 9, &["-T", "ether"]);
    let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    let b: SocketAddr = "192.0.2.2:5000".parse().unwrap();
    let alone_a = total(&decode_all(&mut Decoder::new(false), a, &full));
    let alone_b = total(&decode_all(&mut Decoder::new(false), b, &proto));
    assert!(alone_a > 0 && alone_b > 0);

    // Interleaved: A's template, B's template (same id), then A's data
    // alone. Keyed by template id only (the Python bot), A's data would
    // be read with B's layout.
    let mut decoder = Decoder::new(false);
    let mut flows = Vec::new();
    decoder.decode(a, &full[0], &mut flows);
    decoder.decode(b, &proto[0], &mut flows);
    let mut again = Vec::new();
    let report = decoder.decode(a, &without_templates(&full[0]), &mut again);
    assert_eq!(report.template_misses, 0);
    assert_eq!(again, decode_all(&mut Decoder::new(false), a, &full[..1]));

    // What the Python bot does (one template per id for everyone), shown
    // with one exporter address for both: A's data read with B's layout.
    let mut shared = Decoder::new(false);
    let mut ignored = Vec::new();
    shared.decode(a, &full[0], &mut ignored);
    shared.decode(a, &proto[0], &mut ignored);
    let mut mixed = Vec::new();
    shared.decode(a, &without_templates(&full[0]), &mut mixed);
    assert_ne!(
        mixed, again,
        "the layouts must differ for this test to mean anything"
    );
}

#[test]
fn data_before_its_template_is_held_and_counted_when_the_template_comes() {
    let Some((dir, pcap)) = setup("netflow-held") else {
        return;
    };
    for version in [9u8, 10] {
        let datagrams = capture(&dir, &pcap, version, &[]);
        let from: SocketAddr = "192.0.2.7:2055".parse().unwrap();
        let expected = decode_all(&mut Decoder::new(false), from, &datagrams);
        let mut decoder = Decoder::new(false);
        let mut flows = Vec::new();
        // Data first: nothing yet, and no miss either (it is held).
        let data_only = if version == 9 {
            without_templates(&datagrams[0])
        } else {
            common::ipfix_without_templates(&datagrams[0])
        };
        let report = decoder.decode(from, &data_only, &mut flows);
        assert!(flows.is_empty());
        assert_eq!(report.template_misses, 0, "{report:?}");
        let held = |decoder: &Decoder| {
            let sources = decoder.held();
            assert_eq!(sources.len(), 1, "{sources:?}");
            assert_eq!(sources[0].0.2, u16::from(version));
            sources[0].1
        };
        let before = held(&decoder);
        assert!(before.held >= 1, "{before:?}");
        assert_eq!((before.replayed, before.dropped), (0, 0), "{before:?}");
        // Then the template (with its data): the held data is decoded too.
        for d in &datagrams {
            decoder.decode(from, d, &mut flows);
        }
        let after = held(&decoder);
        assert_eq!(after.held, before.held, "{after:?}");
        assert_eq!(
            (after.replayed, after.dropped),
            (after.held, 0),
            "{after:?}"
        );
        let first: Vec<Flow> = decode_all(&mut Decoder::new(false), from, &datagrams[..1]);
        assert_eq!(
            total(&flows),
            total(&expected) + total(&first),
            "v{version}"
        );
    }
}

#[test]
fn an_exporter_that_restarts_with_a_new_layout_is_read_with_it_and_loses_nothing() {
    let Some((dir, pcap)) = setup("netflow-restart") else {
        return;
    };
    let before = capture(&dir, &pcap, 9, &["-T", "full"]);
    let after = capture(&dir, &pcap, 9, &["-T", "ether"]);
    let from: SocketAddr = "192.0.2.9:40000".parse().unwrap();
    let mut decoder = Decoder::new(false);
    let mut flows = Vec::new();
    let mut lost = 0;
    for d in before.iter().chain(&after) {
        let report = decoder.decode(from, d, &mut flows);
        assert!(!report.malformed);
        lost += report.sequence_lost;
    }
    // Its sequence numbers start again: a restart, not a loss.
    assert_eq!(lost, 0);
    let expected = total(&decode_all(&mut Decoder::new(false), from, &before))
        + total(&decode_all(&mut Decoder::new(false), from, &after));
    assert_eq!(total(&flows), expected);
}

/// xorshift, so that a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn arbitrary_and_mangled_datagrams_never_panic_and_never_grow_without_bound() {
    let mut seeds = Vec::new();
    if let Some((dir, pcap)) = setup("netflow-fuzz") {
        for version in [5u8, 9, 10] {
            seeds.extend(capture(&dir, &pcap, version, &[]));
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut decoder = Decoder::new(true);
    let mut traffic = grafolean_netflow_bot::aggregate::Minute::new(1000);
    let mut flows = Vec::new();
    let before = peak_rss_kib();
    let mut malformed = 0u64;
    for round in 0..200_000u32 {
        let datagram: Vec<u8> = if seeds.is_empty() || round.is_multiple_of(4) {
            // Random bytes with a plausible version, so the parsers run.
            let len = (rng.next() % 1500) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if d.len() >= 4 && round.is_multiple_of(8) {
                // sFlow v5.
                d[..4].copy_from_slice(&5u32.to_be_bytes());
            } else if d.len() >= 2 {
                let v = [5u16, 9, 10][(rng.next() % 3) as usize];
                d[..2].copy_from_slice(&v.to_be_bytes());
            }
            d
        } else {
            // A real datagram with a few bytes changed (counts, lengths,
            // template fields), then cut short or not.
            let mut d = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
            for _ in 0..(1 + rng.next() % 4) {
                let at = (rng.next() % d.len() as u64) as usize;
                d[at] = rng.next() as u8;
            }
            if rng.next().is_multiple_of(3) {
                d.truncate((rng.next() % d.len() as u64) as usize);
            }
            d
        };
        // Many exporters, so that templates, held data and sequences pile
        // up; counted as the receivers count them (sums that saturate).
        let from = SocketAddr::from(([10, 9, (round % 250) as u8, (round / 250 % 8) as u8], 2055));
        flows.clear();
        let report = decoder.decode(from, &datagram, &mut flows);
        malformed += u64::from(report.malformed);
        for f in &flows {
            traffic.add(from.ip(), f);
        }
        // No flow out of nothing: a record takes at least a byte.
        assert!(
            flows.len() <= datagram.len(),
            "{} flows from {} bytes",
            flows.len(),
            datagram.len()
        );
    }
    assert!(malformed > 0);
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 256 * 1024, "peak RSS grew by {grown} KiB");
}

#[test]
fn the_fast_path_reads_what_netflow_parser_reads() {
    let Some((dir, _)) = setup("netflow-fast") else {
        return;
    };
    let pcap = dir.join("many.pcap");
    write_pcap(&pcap, &common::many_flows(5_000));
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for (version, args) in [
        (9u8, &[][..]),
        (10, &[][..]),
        (9, &["-T", "ether"][..]),
        (10, &["-s", "7"][..]),
    ] {
        let datagrams = capture(&dir, &pcap, version, args);
        let from: SocketAddr = "192.0.2.3:9000".parse().unwrap();
        for sampling in [false, true] {
            let mut fast = Decoder::new(sampling);
            let mut slow = Decoder::new(sampling).without_fast_path();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for d in &datagrams {
                let ra = fast.decode(from, d, &mut a);
                let rb = slow.decode(from, d, &mut b);
                assert_eq!(ra, rb, "v{version} {args:?}");
            }
            assert_eq!(a, b, "v{version} {args:?} sampling {sampling}");
            assert!(
                a.len() >= if args.contains(&"-s") { 500 } else { 5_000 },
                "{}",
                a.len()
            );
            // Most of them went the fast way (all but those with templates).
            assert!(
                fast.fast_reads() * 10 >= datagrams.len() as u64 * 8,
                "{} of {}",
                fast.fast_reads(),
                datagrams.len()
            );
            assert_eq!(slow.fast_reads(), 0);
            // Data sets with bytes changed (not their set headers): both
            // read the same values from them.
            for d in datagrams.iter().skip(1).take(200) {
                let mut d = d.clone();
                let header = if version == 9 { 24 } else { 20 };
                for _ in 0..8 {
                    let at = header + (rng.next() % (d.len() - header) as u64) as usize;
                    d[at] = rng.next() as u8;
                }
                let (mut a, mut b) = (Vec::new(), Vec::new());
                fast.decode(from, &d, &mut a);
                slow.decode(from, &d, &mut b);
                assert_eq!(a, b, "mangled v{version} {args:?}");
            }
        }
    }
}

#[test]
fn templates_kept_in_a_file_decode_an_exporters_data_after_a_restart() {
    let Some((dir, pcap)) = setup("netflow-template-file") else {
        return;
    };
    use grafolean_netflow_bot::templates::TemplateFile;
    use std::sync::Arc;
    let from: SocketAddr = "192.0.2.5:2055".parse().unwrap();
    let path = dir.join("templates");
    for version in [9u8, 10] {
        let datagrams = capture(&dir, &pcap, version, &[]);
        let file = Arc::new(TemplateFile::load(&path).unwrap());
        let mut before = Decoder::with_template_store(false, file.clone());
        let expected = decode_all(&mut before, from, &datagrams[..1]);
        file.save().unwrap();
        assert!(!file.is_empty());
        // A new process: the file loaded, and data without its template.
        let file = Arc::new(TemplateFile::load(&path).unwrap());
        let mut after = Decoder::with_template_store(false, file);
        let data = if version == 9 {
            without_templates(&datagrams[0])
        } else {
            common::ipfix_without_templates(&datagrams[0])
        };
        let mut flows = Vec::new();
        let report = after.decode(from, &data, &mut flows);
        assert_eq!(report.template_misses, 0, "v{version}: {report:?}");
        assert_eq!(flows, expected, "v{version}");
        // Without the file, the same datagram is held, not decoded.
        let mut fresh = Decoder::new(false);
        let mut none = Vec::new();
        fresh.decode(from, &data, &mut none);
        assert!(none.is_empty());
    }
    // A file that is not the bot's is refused, and left as it was.
    let other = dir.join("other");
    std::fs::write(&other, b"not templates").unwrap();
    assert!(TemplateFile::load(&other).is_err());
    assert_eq!(std::fs::read(&other).unwrap(), b"not templates");
}
