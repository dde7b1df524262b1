//! A burst of concurrent creates: every POST sent at once, each instance
//! polled until it is Ready; what was refused, and when the last one was
//! Ready.

use std::time::{Duration, Instant};

use strata_client::{Client, CreateInstance, Phase};

use crate::PROJECT;

/// Interval between GETs of each instance while waiting for Ready (50
/// instances polled every 10 ms would be 5,000 GETs a second on the CPUs
/// that provision them).
pub const POLL: Duration = Duration::from_millis(50);

/// What one instance of the burst came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Ready this long after the burst began.
    Ready(Duration),
    /// The POST was refused: status and detail.
    Refused(String),
    /// Accepted, then failed or not Ready within the deadline.
    NotReady(String),
}

/// The burst's figures.
#[derive(Debug, Clone, Default)]
pub struct BurstFigures {
    pub outcomes: Vec<Outcome>,
}

impl BurstFigures {
    pub fn size(&self) -> usize {
        self.outcomes.len()
    }

    /// Times to Ready, sorted.
    pub fn ready(&self) -> Vec<Duration> {
        let mut v: Vec<Duration> = self
            .outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Ready(d) => Some(*d),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Answers other than 2xx to the POSTs.
    pub fn refused(&self) -> Vec<&str> {
        self.messages(true)
    }

    /// Instances accepted that did not become Ready.
    pub fn not_ready(&self) -> Vec<&str> {
        self.messages(false)
    }

    fn messages(&self, refused: bool) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter_map(|o| match (o, refused) {
                (Outcome::Refused(m), true) | (Outcome::NotReady(m), false) => Some(m.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Every instance Ready, none refused.
    pub fn all_ready(&self) -> bool {
        self.size() > 0 && self.ready().len() == self.size()
    }

    /// From the burst's start to the last instance Ready.
    pub fn last_ready(&self) -> Duration {
        self.ready().last().copied().unwrap_or_default()
    }
}

/// The burst of `size` creates (none when 0), printed; everything it
/// created is deleted before it returns.
pub async fn measure(
    client: &Client,
    prefix: &str,
    size: usize,
    live: &mut Vec<String>,
) -> anyhow::Result<BurstFigures> {
    if size == 0 {
        return Ok(BurstFigures::default());
    }
    let b = run(client, prefix, size, crate::READY_TIMEOUT, live).await;
    println!(
        "burst of {}: {} Ready, {} refused, {} not Ready; last Ready after {} ms",
        b.size(),
        b.ready().len(),
        b.refused().len(),
        b.not_ready().len(),
        b.last_ready().as_millis()
    );
    for m in b.refused().iter().chain(b.not_ready().iter()) {
        println!("  {m}");
    }
    while let Some(name) = live.pop() {
        crate::delete(client, &name).await?;
    }
    Ok(b)
}

/// Sends `size` creates at once (names `<prefix>-burst-NN`, the default
/// plan) and waits for each; the names accepted are pushed to `live`.
pub async fn run(
    client: &Client,
    prefix: &str,
    size: usize,
    timeout: Duration,
    live: &mut Vec<String>,
) -> BurstFigures {
    let names: Vec<String> = (1..=size)
        .map(|i| format!("{prefix}-burst-{i:02}"))
        .collect();
    live.extend(names.iter().cloned());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, name) in names.into_iter().enumerate() {
        let client = client.clone();
        tasks.spawn(async move { (i, one(&client, name, start, timeout).await) });
    }
    let mut outcomes = vec![Outcome::NotReady("the task did not finish".into()); size];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, outcome)) = joined {
            outcomes[i] = outcome;
        }
    }
    BurstFigures { outcomes }
}

async fn one(client: &Client, name: String, start: Instant, timeout: Duration) -> Outcome {
    let req = CreateInstance {
        name: name.clone(),
        ..CreateInstance::default()
    };
    if let Err(e) = client.create_instance(PROJECT, &req, None).await {
        return Outcome::Refused(e.to_string());
    }
    loop {
        match client.get_instance(PROJECT, &name).await {
            Ok(i) if i.status.phase == Phase::Ready => return Outcome::Ready(start.elapsed()),
            Ok(i) if i.status.phase == Phase::Failed => {
                return Outcome::NotReady(format!("{name} failed: {}", i.status.message));
            }
            Ok(_) => {}
            Err(e) => return Outcome::NotReady(format!("{name}: {e}")),
        }
        if start.elapsed() > timeout {
            return Outcome::NotReady(format!("{name} not Ready after {timeout:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_ready_only_when_every_create_became_ready() {
        let ms = Duration::from_millis;
        let ok = BurstFigures {
            outcomes: vec![Outcome::Ready(ms(300)), Outcome::Ready(ms(200))],
        };
        assert!(ok.all_ready());
        assert_eq!(ok.last_ready(), ms(300));
        let refused = BurstFigures {
            outcomes: vec![
                Outcome::Ready(ms(300)),
                Outcome::Refused("503 Service Unavailable: no port".into()),
            ],
        };
        assert!(!refused.all_ready());
        assert_eq!(refused.refused(), ["503 Service Unavailable: no port"]);
        assert!(!BurstFigures::default().all_ready());
    }
}
