//! Acknowledged means durable: a change answered 200 survives `kill -9`, and a change that
//! could not be written is answered 500 naming the cause and changes nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{client, Proxy, TempDir};

/// What the state must show for one service name after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Present,
    Absent,
    /// The last request for it was in flight when the process died: either outcome is right.
    Either,
}

/// One request of a worker, in the order it sent them.
struct Sent {
    name: String,
    add: bool,
    acknowledged: bool,
}

/// A small xorshift generator: the test prints its seed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Adds services (and removes some of those it added) until a request fails because the
/// process is gone. Every worker owns its names, so per name the requests are sequential.
fn worker(api: SocketAddr, prefix: String, seed: u64) -> Vec<Sent> {
    let http = client();
    let mut rng = Rng(seed | 1);
    let mut added: Vec<String> = Vec::new();
    let mut sent = Vec::new();
    for i in 0.. {
        let remove = !added.is_empty() && rng.below(3) == 0;
        let (name, url) = if remove {
            let name = added.swap_remove(rng.below(added.len() as u64) as usize);
            let url = format!("http://{api}/v1/docker-flow-proxy/remove?serviceName={name}");
            (name, url)
        } else {
            let name = format!("{prefix}-{i}");
            let url = format!(
                "http://{api}/v1/docker-flow-proxy/reconfigure?serviceName={name}&servicePath=/{name}&port=8080&outboundHostname=127.0.0.1"
            );
            (name, url)
        };
        let outcome = http.get(url).send();
        let acknowledged = matches!(&outcome, Ok(r) if r.status() == 200);
        if acknowledged && !remove {
            added.push(name.clone());
        }
        sent.push(Sent {
            name,
            add: !remove,
            acknowledged,
        });
        match outcome {
            Ok(r) if r.status() == 200 => {}
            // The process died under this request (or refused it): stop here.
            _ => break,
        }
    }
    sent
}

fn present_services(p: &Proxy) -> Vec<String> {
    let config = p.api("config", "type=json").json();
    config.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn acknowledged_changes_survive_kill_9_at_random_points() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill -9 test seed {seed}");
    let mut rng = Rng(seed | 1);
    let dir = TempDir::new("durable");
    let mut model: BTreeMap<String, Expect> = BTreeMap::new();
    let (mut acked_adds, mut acked_removes, mut in_flight, mut kills) = (0, 0, 0, 0);
    const ROUNDS: usize = 4;
    const WORKERS: u64 = 6;
    for round in 0..=ROUNDS {
        let p = Proxy::builder().data_dir(&dir.0).start();
        // Everything acknowledged before the last kill is there; every acknowledged removal
        // stayed removed.
        let present = present_services(&p);
        for (name, expect) in model.iter_mut() {
            let found = present.contains(name);
            match expect {
                Expect::Present => assert!(
                    found,
                    "round {round}: acknowledged {name} lost (seed {seed})"
                ),
                Expect::Absent => assert!(
                    !found,
                    "round {round}: removed {name} came back (seed {seed})"
                ),
                Expect::Either => {}
            }
            *expect = if found {
                Expect::Present
            } else {
                Expect::Absent
            };
        }
        for name in &present {
            assert!(
                model.contains_key(name),
                "round {round}: {name} was never sent"
            );
        }
        if round == ROUNDS {
            break;
        }
        let api = p.api;
        let handles: Vec<_> = (0..WORKERS)
            .map(|t| {
                let prefix = format!("r{round}w{t}");
                let seed = rng.next();
                std::thread::spawn(move || worker(api, prefix, seed))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150 + rng.below(600)));
        drop(p); // SIGKILL, then reap.
        kills += 1;
        for handle in handles {
            for sent in handle.join().unwrap() {
                let expect = if !sent.acknowledged {
                    in_flight += 1;
                    Expect::Either
                } else if sent.add {
                    acked_adds += 1;
                    Expect::Present
                } else {
                    acked_removes += 1;
                    Expect::Absent
                };
                model.insert(sent.name, expect);
            }
        }
    }
    eprintln!(
        "kill -9: {kills} kills, {acked_adds} acknowledged adds, {acked_removes} acknowledged removals, {in_flight} requests in flight at a kill; all acknowledged changes found"
    );
    assert_eq!(kills, ROUNDS);
    assert!(
        acked_adds >= 20 && acked_removes >= 5,
        "too few acknowledged changes to mean anything: {acked_adds} adds, {acked_removes} removals"
    );
}

#[test]
fn a_change_that_cannot_be_written_is_500_naming_the_cause_and_changes_nothing() {
    let dir = TempDir::new("unwritable");
    let p = Proxy::builder().data_dir(&dir.0).start();
    let add = |name: &str| {
        p.reconfigure(&format!(
            "serviceName={name}&servicePath=/{name}&port=8080&outboundHostname=127.0.0.1"
        ))
    };
    assert_eq!(add("kept").status, 200);
    // The temporary file's name taken by a directory: every write fails (even as root).
    let blocker = dir.0.join("services.json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let r = add("refused");
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["Status"], "NOK");
    let message = r.json()["Message"].as_str().unwrap().to_string();
    assert!(message.contains("services.json.tmp"), "{message}");
    assert!(message.contains("Is a directory"), "{message}");
    let r = p.api("remove", "serviceName=kept");
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(r.json()["Message"]
        .as_str()
        .unwrap()
        .contains("services.json.tmp"));
    // Nothing of the rejected requests was applied, and the proxy keeps serving.
    let mut present = present_services(&p);
    present.sort();
    assert_eq!(present, ["kept"]);
    assert_eq!(p.api("ping", "").status, 200);
    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(add("later").status, 200);
    let status = p.terminate();
    assert!(status.success(), "{status}");
    let p = Proxy::builder().data_dir(&dir.0).start();
    let mut present = present_services(&p);
    present.sort();
    assert_eq!(present, ["kept", "later"]);
}
