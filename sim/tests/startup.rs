//! Start-up cost of a large corpus: 3 corps × 20,000 messages must start within seconds.

use std::time::Instant;

use wework_archive_sim::{SimConfig, Simulator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_corps_of_twenty_thousand_start_quickly() {
    let t = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim =
        Simulator::start(listener, SimConfig { seed: 99, corps: 3, messages: 20_000, ..Default::default() })
            .await
            .unwrap();
    let elapsed = t.elapsed();
    let corpus = sim.corpus();
    let media: Vec<_> = corpus.corps.iter().flat_map(|c| c.media.iter()).collect();
    let bytes: u64 = media.iter().map(|m| m.size).sum();
    eprintln!(
        "started in {elapsed:?}: {} records, {} media, {:.1} MB",
        corpus.corps.iter().map(|c| c.records.len()).sum::<usize>(),
        media.len(),
        bytes as f64 / 1e6
    );
    assert_eq!(sim.manifest().corps.iter().map(|c| c.messages).sum::<usize>(), 60_000);
    // Generous for slow CI machines; typically well under 2 s.
    assert!(elapsed.as_secs() < 20, "{elapsed:?}");
    sim.shutdown().await;
}
