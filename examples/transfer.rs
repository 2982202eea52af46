//! Moves one file through a configured server's transport, for benchmarks
//! of the transfer path alone (ferry's Send rules are not built yet):
//!
//!   transfer -c ferry.toml SERVER get REMOTE LOCAL
//!   transfer -c ferry.toml SERVER put LOCAL REMOTE

use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 || args[1] != "-c" {
        eprintln!("usage: transfer -c CONFIG SERVER (get REMOTE LOCAL | put LOCAL REMOTE)");
        std::process::exit(2);
    }
    let cfg = ferry::config::load(&PathBuf::from(&args[2])).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let server = cfg.servers.get(&args[3]).expect("no such server").clone();
    let pool = ferry::remote::Pool::new(server);
    let mut session = pool.get().await.unwrap_or_else(|e| panic!("{e}"));
    let t0 = std::time::Instant::now();
    let bytes = match args[4].as_str() {
        "get" => {
            let file = tokio::fs::File::create(&args[6]).await.unwrap();
            let mut sink = tokio::io::BufWriter::with_capacity(256 * 1024, file);
            // Reads expect a version, as the listing would give it.
            let stat = session.stat(&args[5]).await;
            let expected = stat.unwrap_or_else(|e| panic!("{e}")).version();
            let n = session
                .read_into(&args[5], 0, expected, &mut sink)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            sink.flush().await.unwrap();
            n
        }
        "put" => {
            let file = tokio::fs::File::open(&args[5]).await.unwrap();
            let mut source = tokio::io::BufReader::with_capacity(256 * 1024, file);
            session
                .write_from(&args[6], ferry::remote::WriteMode::Replace, &mut source)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
        other => panic!("unknown direction {other}"),
    };
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{bytes} bytes in {secs:.3} s = {:.1} MB/s",
        bytes as f64 / secs / 1e6
    );
}
