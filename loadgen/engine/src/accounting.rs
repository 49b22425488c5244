//! The echo-server's run accounting, read from every replica loadgen can reach: what the
//! workload did for this run (requests served, spans and log records exported, refused,
//! dropped, dropped on purpose by chaos), and per sampled trace what became of its
//! telemetry ([`EchoLedger`], the export ledger `ricochet-verify` splits missing samples
//! and ingest latency with).
//!
//! Every request carries the run id in [`RUN_HEADER`]; the echo-server counts only those,
//! so scrapes, probes and other traffic are not counted, and two runs against the same
//! echo-server do not mix. Replicas are found by resolving the target's host name: a
//! headless Service resolves to every pod, so each is read; a single address (a
//! ClusterIP Service, one process) is one reading, and when answers from it name
//! different replicas the report says the counts cover only some of them.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use echo_server::contract::{Fate, MAX_FATE_IDS, RunAccount, TraceFates};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use ricochet_verify::fate::{Export, ExportLedger};
use ricochet_verify::{BoxFuture, Sample, Signal};

pub use echo_server::contract::RUN_HEADER;

/// The longest one accounting request may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// A fresh run id: the plan's name (its first 40 valid characters) and 16 random hex
/// digits; a runner of a split run appends its index, so each runner reads its own.
pub fn run_id(plan_name: &str, runner: Option<u32>) -> String {
    let name: String = plan_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(40)
        .collect();
    let nonce = crate::client::TraceIds::fresh().trace_id.1;
    match runner {
        Some(i) => format!("{name}-{nonce:016x}-r{i}"),
        None => format!("{name}-{nonce:016x}"),
    }
}

/// The echo-server replicas of a run and the run id their accounting is kept under.
#[derive(Debug)]
pub struct Accounting {
    bases: Vec<String>,
    run: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    /// Replica names seen answering, to tell when one address hides several.
    seen: Mutex<BTreeSet<String>>,
}

/// The run's accounting summed over the replicas read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTotals {
    /// The sum over the replicas read.
    pub total: RunAccount,
    /// The replicas that answered, by name.
    pub replicas: Vec<String>,
    /// Why some replica could not be read, if any.
    pub unread: Vec<String>,
    /// Set when one address answered as several replicas (a load-balanced Service): the
    /// counts then cover only the replicas that happened to answer.
    pub partial: bool,
}

impl Accounting {
    /// The replicas behind `urls` (`http://host:port` each): every address their hosts
    /// resolve to. Fails with the reason when a name does not resolve.
    pub async fn discover(urls: &[String], run: String) -> Result<Self, String> {
        let mut addrs = BTreeSet::new();
        for url in urls {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("cannot read the run accounting of {url}: {e}"))?;
            let host = uri.host().unwrap_or("127.0.0.1");
            let port = uri.port_u16().unwrap_or(80);
            addrs.extend(
                tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| format!("cannot resolve {host} for the run accounting: {e}"))?,
            );
        }
        let bases = addrs.iter().map(|a| format!("http://{a}")).collect();
        Ok(Self::at(bases, run))
    }

    /// The replicas at these base URLs.
    pub fn at(bases: Vec<String>, run: String) -> Self {
        Self {
            bases,
            run,
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// The run id.
    pub fn run(&self) -> &str {
        &self.run
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, url: String) -> Result<T, String> {
        let fetch = async {
            let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
            let resp = self.client.get(uri).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(format!("answered {status}: {text}"));
            }
            serde_json::from_slice::<T>(&body)
                .map_err(|e| format!("not an echo-server run accounting document: {e}"))
        };
        tokio::time::timeout(TIMEOUT, fetch)
            .await
            .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))
            .and_then(|r| r)
            .map_err(|e| format!("cannot read the run accounting at {url}: {e}"))
    }

    fn saw(&self, replica: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(replica.to_owned());
    }

    /// Reads the totals once the exports still in flight have been answered: again every
    /// 100 ms while some item is neither accepted, refused nor dropped, for at most
    /// `patience` (the echo-server exports every 200 ms by default).
    pub async fn settled_totals(&self, patience: Duration) -> RunTotals {
        let until = tokio::time::Instant::now() + patience;
        loop {
            let t = self.totals().await;
            if pending(&t.total) == 0 || tokio::time::Instant::now() >= until {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads `GET /runs/{run}` from every replica and sums them.
    pub async fn totals(&self) -> RunTotals {
        let mut out = RunTotals::default();
        for base in &self.bases {
            match self
                .get::<RunAccount>(format!("{base}/runs/{}", self.run))
                .await
            {
                Ok(a) => {
                    self.saw(&a.replica);
                    add(&mut out.total, &a);
                    out.replicas.push(a.replica);
                }
                Err(e) => out.unread.push(e),
            }
        }
        out.total.run = self.run.clone();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).len();
        out.partial = seen > self.bases.len();
        out
    }
}

/// Items whose export has not been answered yet.
fn pending(a: &RunAccount) -> u64 {
    [&a.spans, &a.logs]
        .iter()
        .map(|x| {
            x.emitted
                .saturating_sub(x.accepted + x.refused + x.dropped + x.chaos_dropped)
        })
        .sum()
}

fn add(sum: &mut RunAccount, a: &RunAccount) {
    sum.requests += a.requests;
    sum.chaos_dropped_requests += a.chaos_dropped_requests;
    for (s, x) in [(&mut sum.spans, &a.spans), (&mut sum.logs, &a.logs)] {
        s.emitted += x.emitted;
        s.accepted += x.accepted;
        s.refused += x.refused;
        s.dropped += x.dropped;
        s.chaos_dropped += x.chaos_dropped;
    }
}

/// The export ledger of `ricochet-verify`, read from the echo-server replicas.
#[derive(Debug)]
pub struct EchoLedger(pub std::sync::Arc<Accounting>);

impl ExportLedger for EchoLedger {
    fn fates<'a>(&'a self, signal: Signal, samples: &'a [Sample]) -> BoxFuture<'a, Vec<Export>> {
        Box::pin(async move {
            let mut out = vec![Export::Unknown; samples.len()];
            for (chunk_no, chunk) in samples.chunks(MAX_FATE_IDS).enumerate() {
                let ids: Vec<String> = chunk.iter().map(|s| s.trace_id.to_hex()).collect();
                let index: std::collections::HashMap<&str, usize> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (id.as_str(), i))
                    .collect();
                for base in &self.0.bases {
                    let url = format!("{base}/runs/{}/traces?ids={}", self.0.run, ids.join(","));
                    let Ok(answer) = self.0.get::<TraceFates>(url).await else {
                        continue;
                    };
                    self.0.saw(&answer.replica);
                    for f in answer.fates {
                        let Some(&i) = index.get(f.trace_id.as_str()) else {
                            continue;
                        };
                        let fate = match signal {
                            Signal::Logs => f.logs,
                            _ => f.spans,
                        };
                        if fate.emitted > 0 {
                            out[chunk_no * MAX_FATE_IDS + i] = export_of(&fate);
                        }
                    }
                }
            }
            out
        })
    }
}

/// One trace's fate of one signal as the verifier takes it: injected loss first, then a
/// refusal, a queue drop, a pending export, and accepted only when every item was.
pub fn export_of(f: &Fate) -> Export {
    if f.chaos_dropped > 0 {
        Export::Injected
    } else if f.refused > 0 {
        Export::Refused
    } else if f.dropped > 0 {
        Export::Dropped
    } else if f.pending() > 0 {
        Export::Pending
    } else if f.accepted > 0 {
        match f.acked_at_unix_nanos {
            Some(ns) => Export::Accepted {
                acked_at: UNIX_EPOCH + Duration::from_nanos(ns),
            },
            None => Export::Unknown,
        }
    } else {
        Export::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_valid_for_the_echo_server_and_distinct() {
        let a = run_id("api 3x GA / nightly", None);
        let b = run_id("api 3x GA / nightly", Some(3));
        assert!(
            a.starts_with("api3xGAnightly-") && b.ends_with("-r3"),
            "{a} {b}"
        );
        for id in [&a, &b] {
            assert!(id.len() <= echo_server::contract::MAX_RUN_ID_LEN);
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
            );
        }
        assert_ne!(a, run_id("api 3x GA / nightly", None));
    }

    #[test]
    fn a_fate_is_accepted_only_when_every_item_was() {
        let f = |accepted, refused, chaos, emitted| Fate {
            emitted,
            accepted,
            refused,
            chaos_dropped: chaos,
            acked_at_unix_nanos: Some(1_000_000_000),
            ..Fate::default()
        };
        assert_eq!(
            export_of(&f(3, 0, 0, 3)),
            Export::Accepted {
                acked_at: UNIX_EPOCH + Duration::from_secs(1)
            }
        );
        assert_eq!(export_of(&f(2, 1, 0, 3)), Export::Refused);
        assert_eq!(export_of(&f(0, 0, 3, 3)), Export::Injected);
        assert_eq!(export_of(&f(2, 0, 0, 3)), Export::Pending);
    }

    #[tokio::test]
    async fn every_address_of_every_replica_url_is_read() {
        let a = Accounting::discover(
            &[
                "http://127.0.0.1:9001".into(),
                "http://127.0.0.2:9002/".into(),
                "http://127.0.0.1:9001".into(),
            ],
            "r".into(),
        )
        .await
        .unwrap();
        assert_eq!(a.bases, ["http://127.0.0.1:9001", "http://127.0.0.2:9002"]);
        // Nothing listens there: each replica is reported unread, with why.
        let t = a.totals().await;
        assert!(t.replicas.is_empty());
        assert_eq!(t.unread.len(), 2, "{:?}", t.unread);
        assert!(
            t.unread[0]
                .starts_with("cannot read the run accounting at http://127.0.0.1:9001/runs/r"),
            "{:?}",
            t.unread
        );
    }
}
